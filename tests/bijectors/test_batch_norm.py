"""Flow batch normalization: the inference formula, training-mode statistics, the
warm-started moving averages, the lag, and argument checks.

Exactness in both modes, log-dets, event shapes and the cache are checked in
``test_conformance``."""

import re

import numpy as np
import pytest

from helpers import (
    BACKEND,
    assert_close,
    fresh,
    make_dist,
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
    names = ("log_gamma", "beta", "moving_mean", "moving_variance", "num_updates")
    return {name: to_numpy(getattr(st, name)) for name in names}


def spread_batch(rng, batch=64):
    """Per-channel means and spreads far from any moving statistics."""
    return rng.normal(size=(batch,) + EVENT) * np.array([3.0, 0.5]) + np.array([-4.0, 2.0])


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
    bn.inverse(fresh(y), training=False)
    after = weights(bn)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_training_mode_uses_batch_statistics():
    layer = BatchNormalization(event_shape=EVENT, momentum=0.9, dtype="float64")
    randomize(layer.variables, seed=8, stddev=0.5)
    y_np = spread_batch(np.random.default_rng(1))
    y = tensor(y_np)
    before = weights(layer)
    z = to_numpy(layer.inverse(y, training=True))
    ildj = layer.inverse_log_det_jacobian(y, event_ndims=3, training=True)
    mean = y_np.mean(axis=(0, 1, 2))
    var = y_np.var(axis=(0, 1, 2))
    # Output statistics: mean beta, variance exp(2 log_gamma) var / (var + eps).
    gamma2 = np.exp(2.0 * before["log_gamma"])
    assert_close(z.mean(axis=(0, 1, 2)), before["beta"], atol=STATS_TOL)
    assert_close(z.var(axis=(0, 1, 2)), gamma2 * var / (var + EPS), atol=STATS_TOL, rtol=STATS_TOL)
    assert np.allclose(z.var(axis=(0, 1, 2)), gamma2, rtol=1e-3)
    # The log-det came from the same pass: the averages moved once, by the momentum
    # (after many updates the decay is the momentum itself).
    after = weights(layer)
    assert after["num_updates"] == before["num_updates"] + 1
    assert_close(after["moving_mean"], 0.9 * before["moving_mean"] + 0.1 * mean, atol=STATS_TOL)
    assert_close(after["moving_variance"], 0.9 * before["moving_variance"] + 0.1 * var, atol=STATS_TOL)
    # Log-det from the batch variance, with the batch shape.
    assert tuple(ildj.shape) == (64,)
    expected = EVENT[0] * EVENT[1] * np.sum(before["log_gamma"] - 0.5 * np.log(var + EPS))
    assert_close(ildj, np.full(64, expected), atol=100 * STATS_TOL)


def test_training_mode_through_a_distribution_updates_once():
    layer = BatchNormalization(event_shape=EVENT, dtype="float64")
    randomize(layer.variables, seed=11)
    dist = make_dist(layer, EVENT)
    y = tensor(spread_batch(np.random.default_rng(3), batch=8))
    count = float(weights(layer)["num_updates"])
    training = to_numpy(dist.log_prob(y, bijector_kwargs={"training": True}))
    assert float(weights(layer)["num_updates"]) == count + 1
    inference = to_numpy(dist.log_prob(y))
    assert float(weights(layer)["num_updates"]) == count + 1
    assert np.max(np.abs(training - inference)) > 1e-3


def test_training_mode_log_det_has_extra_batch_dims():
    layer = BatchNormalization(event_shape=EVENT, dtype="float64")
    randomize(layer.variables, seed=9)
    y = tensor(np.random.default_rng(2).normal(size=(2, 5) + EVENT))
    ildj = layer.inverse_log_det_jacobian(y, event_ndims=3, training=True)
    assert tuple(ildj.shape) == (2, 5)
    assert np.all(np.isfinite(to_numpy(ildj)))


def test_training_mode_forward_uses_moving_averages(points):
    layer = BatchNormalization(event_shape=EVENT, dtype="float64")
    randomize(layer.variables, seed=10)
    x, _ = points
    expected = to_numpy(layer.forward(x))
    before = weights(layer)
    assert_close(layer.forward(fresh(x), training=True), expected, atol=0.0)
    for key, value in weights(layer).items():
        np.testing.assert_array_equal(value, before[key])


def test_moving_averages_are_warm_started():
    """The first batch sets the averages; the next ones are averaged with equal weights
    until the momentum takes over."""
    layer = BatchNormalization(event_shape=EVENT, momentum=0.5, dtype="float64")
    rng = np.random.default_rng(4)
    batches = [spread_batch(rng, batch=16) * (1.0 + i) for i in range(4)]
    means = [b.mean(axis=(0, 1, 2)) for b in batches]
    variances = [b.var(axis=(0, 1, 2)) for b in batches]
    layer.inverse(tensor(batches[0]), training=True)
    w = weights(layer)
    assert_close(w["moving_mean"], means[0], atol=STATS_TOL)
    assert_close(w["moving_variance"], variances[0], atol=STATS_TOL, rtol=STATS_TOL)
    layer.inverse(tensor(batches[1]), training=True)
    w = weights(layer)
    # k = 1: decay min(0.5, 1/2), the plain mean of two batches.
    assert_close(w["moving_mean"], (means[0] + means[1]) / 2, atol=STATS_TOL)
    layer.inverse(tensor(batches[2]), training=True)
    # k = 2: decay min(0.5, 2/3) = 0.5, the momentum.
    expected = 0.5 * (means[0] + means[1]) / 2 + 0.5 * means[2]
    assert_close(weights(layer)["moving_mean"], expected, atol=STATS_TOL)
    assert weights(layer)["num_updates"] == 3


def test_lag_mixes_moving_averages_into_training_statistics():
    lagged = BatchNormalization(event_shape=EVENT, lag=0.5, dtype="float64")
    plain = BatchNormalization(event_shape=EVENT, dtype="float64")
    for layer in (lagged, plain):
        randomize(layer.variables, seed=12, stddev=0.5)
    before = weights(lagged)
    k = float(before["num_updates"])
    y_np = spread_batch(np.random.default_rng(5), batch=16)
    mean, var = y_np.mean(axis=(0, 1, 2)), y_np.var(axis=(0, 1, 2))
    lag = min(0.5, k / (k + 1.0))
    mixed_mean = (1 - lag) * mean + lag * before["moving_mean"]
    mixed_var = (1 - lag) * var + lag * before["moving_variance"]
    log_scale = before["log_gamma"] - 0.5 * np.log(mixed_var + EPS)
    expected = (y_np - mixed_mean) * np.exp(log_scale) + before["beta"]
    y = tensor(y_np)
    z = lagged.inverse(y, training=True)
    assert_close(z, expected, atol=STATS_TOL)
    assert_close(
        lagged.inverse_log_det_jacobian(y, event_ndims=3, training=True),
        np.full(16, EVENT[0] * EVENT[1] * log_scale.sum()),
        atol=100 * STATS_TOL,
    )
    assert np.max(np.abs(to_numpy(z) - to_numpy(plain.inverse(tensor(y_np), training=True)))) > 1e-3


def test_training_must_be_a_python_bool(points):
    layer = BatchNormalization(event_shape=EVENT, dtype="float64")
    _, y = points
    with pytest.raises(ValueError, match=re.escape("received 'yes'")):
        layer.inverse(y, training="yes")
    with pytest.raises(ValueError, match=re.escape("['momentum']")):
        layer.inverse(fresh(y), momentum=0.1)


def test_builds_lazily(points):
    layer = BatchNormalization(dtype="float64")
    assert layer.state is None and layer.variables == []
    x, _ = points
    layer.forward(x)
    assert layer.event_shape == EVENT
    assert len(layer.variables) == 5 and len(layer.trainable_variables) == 2
    assert len(layer.non_trainable_variables) == 3


@pytest.mark.parametrize(
    "key, bad, bound",
    [
        ("momentum", 1.0, "< 1.0"),
        ("momentum", -0.1, ">= 0.0"),
        ("momentum", 1.5, "< 1.0"),
        ("momentum", "0.9", ">= 0.0"),
        ("lag", 1.0, "< 1.0"),
        ("lag", -0.5, ">= 0.0"),
        ("lag", float("nan"), ">= 0.0"),
    ],
)
def test_bad_momentum_or_lag(key, bad, bound):
    with pytest.raises(ValueError, match=re.escape(f"{key} must be a finite number {bound}; received {bad!r}.")):
        BatchNormalization(**{key: bad})


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("inf"), "1e-3", True])
def test_bad_epsilon(bad):
    with pytest.raises(ValueError, match=re.escape(f"epsilon must be a finite number > 0.0; received {bad!r}.")):
        BatchNormalization(epsilon=bad)


def test_wrong_rank():
    with pytest.raises(ValueError, match=re.escape("[4, 4]")):
        BatchNormalization(event_shape=(4, 4))
