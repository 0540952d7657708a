"""Flow batch normalization: inference-mode bijection, training-mode statistics, errors."""

import re

import numpy as np
import pytest
from helpers import (
    BACKEND,
    assert_close,
    check_log_det,
    check_round_trips,
    fresh,
    randomize,
    tensor,
    to_numpy,
)

from tfp_realnvp import BatchNormalization

EVENT = (4, 4, 2)
EPS = 1e-4
# Keras on JAX reduces float64 means in float32, so batch statistics there carry
# float32 rounding.
STATS_TOL = 1e-5 if BACKEND == "jax" else 1e-10


def weights(bn):
    st = bn.state
    return {name: to_numpy(getattr(st, name)) for name in ("log_gamma", "beta", "moving_mean", "moving_variance")}


@pytest.fixture(scope="module")
def bn():
    layer = BatchNormalization(event_shape=EVENT, dtype="float64")
    randomize(layer.variables, seed=7, stddev=0.5)
    return layer


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return tensor(rng.normal(size=(3,) + EVENT)), tensor(rng.normal(1.0, 2.0, size=(3,) + EVENT))


def test_weights_are_randomised(bn):
    w = weights(bn)
    assert np.all(w["log_gamma"] != 0) and np.all(w["beta"] != 0)
    assert np.all(w["moving_mean"] != 0) and np.all(w["moving_variance"] > 0)
    assert np.all(w["moving_variance"] != 1)


def test_inference_round_trips(bn, points):
    x, y = points
    check_round_trips(bn, x, y, atol=1e-12)


def test_inference_log_det_matches_autodiff_jacobian(bn, points):
    x, y = points
    check_log_det(bn, x, y, atol=1e-10)


def test_inference_matches_formula(bn, points):
    _, y = points
    w = weights(bn)
    log_scale = w["log_gamma"] - 0.5 * np.log(w["moving_variance"] + EPS)
    expected = (to_numpy(y) - w["moving_mean"]) * np.exp(log_scale) + w["beta"]
    assert_close(bn.inverse(y), expected, atol=1e-12)
    ildj = bn.inverse_log_det_jacobian(fresh(y), event_ndims=3)
    # One value per example, not a scalar that TFP broadcasts.
    assert tuple(ildj.shape) == (3,)
    assert_close(ildj, np.full(3, EVENT[0] * EVENT[1] * log_scale.sum()), atol=1e-12, kind="log-det")


def test_inference_leaves_moving_statistics_alone(bn, points):
    _, y = points
    before = weights(bn)
    bn.inverse(fresh(y))
    after = weights(bn)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_training_mode_uses_batch_statistics():
    layer = BatchNormalization(event_shape=EVENT, momentum=0.9, dtype="float64")
    randomize(layer.variables, seed=8, stddev=0.5)
    rng = np.random.default_rng(1)
    # Per-channel means and spreads far from the moving statistics.
    y_np = rng.normal(size=(64,) + EVENT) * np.array([3.0, 0.5]) + np.array([-4.0, 2.0])
    y = tensor(y_np)
    before = weights(layer)
    layer.training = True
    try:
        z = to_numpy(layer.inverse(y))
        ildj = layer.inverse_log_det_jacobian(y, event_ndims=3)
    finally:
        layer.training = False
    mean = y_np.mean(axis=(0, 1, 2))
    var = y_np.var(axis=(0, 1, 2))
    # Output statistics: mean beta, variance exp(2 log_gamma) var / (var + eps).
    gamma2 = np.exp(2.0 * before["log_gamma"])
    assert_close(z.mean(axis=(0, 1, 2)), before["beta"], atol=STATS_TOL)
    assert_close(z.var(axis=(0, 1, 2)), gamma2 * var / (var + EPS), atol=STATS_TOL, rtol=STATS_TOL)
    assert np.allclose(z.var(axis=(0, 1, 2)), gamma2, rtol=1e-3)
    # Moving averages moved towards the batch statistics.
    after = weights(layer)
    assert_close(after["moving_mean"], 0.9 * before["moving_mean"] + 0.1 * mean, atol=STATS_TOL)
    assert_close(after["moving_variance"], 0.9 * before["moving_variance"] + 0.1 * var, atol=STATS_TOL)
    # Log-det from the batch variance, with the batch shape.
    assert tuple(ildj.shape) == (64,)
    expected = EVENT[0] * EVENT[1] * np.sum(before["log_gamma"] - 0.5 * np.log(var + EPS))
    assert_close(ildj, np.full(64, expected), atol=100 * STATS_TOL)


def test_training_mode_log_det_has_extra_batch_dims():
    layer = BatchNormalization(event_shape=EVENT, dtype="float64")
    randomize(layer.variables, seed=9)
    layer.training = True
    y = tensor(np.random.default_rng(2).normal(size=(2, 5) + EVENT))
    ildj = layer.inverse_log_det_jacobian(y, event_ndims=3)
    assert tuple(ildj.shape) == (2, 5)
    assert np.all(np.isfinite(to_numpy(ildj)))


def test_training_mode_forward_uses_moving_averages(points):
    layer = BatchNormalization(event_shape=EVENT, dtype="float64")
    randomize(layer.variables, seed=10)
    x, _ = points
    expected = to_numpy(layer.forward(x))
    layer.training = True
    before = weights(layer)
    assert_close(layer.forward(fresh(x)), expected, atol=0.0)
    for key, value in weights(layer).items():
        np.testing.assert_array_equal(value, before[key])


def test_builds_lazily_and_rejects_another_shape(points):
    layer = BatchNormalization(dtype="float64")
    assert layer.state is None and layer.variables == []
    x, _ = points
    layer.forward(x)
    assert len(layer.variables) == 4 and len(layer.trainable_variables) == 2
    with pytest.raises(ValueError, match=re.escape("[4, 4, 3]")):
        layer.forward(tensor(np.zeros((1, 4, 4, 3))))


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_bad_momentum(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        BatchNormalization(momentum=bad)


@pytest.mark.parametrize("bad", [0.0, -1e-3])
def test_bad_epsilon(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        BatchNormalization(epsilon=bad)


def test_wrong_rank():
    with pytest.raises(ValueError, match=re.escape("[4, 4]")):
        BatchNormalization(event_shape=(4, 4))
