"""LogitPreprocess: the pixel-to-logit formula, its log-det, and the pixel range check."""

import math
import re

import numpy as np
import pytest
from helpers import (
    BACKEND,
    assert_close,
    check_log_det,
    check_round_trips,
    compiled,
    fresh,
    pixels,
    tensor,
    to_numpy,
)

from tfp_realnvp import LogitPreprocess

EVENT = (4, 4, 2)


def reference_inverse(x, alpha):
    """``y = logit(alpha + (1 - 2 alpha) x / 256)`` and ``log|dy/dx|`` summed per example."""
    p = alpha + (1.0 - 2.0 * alpha) * x / 256.0
    y = np.log(p) - np.log1p(-p)
    log_det = np.log((1.0 - 2.0 * alpha) / 256.0) - np.log(p) - np.log1p(-p)
    return y, log_det.sum(axis=(-3, -2, -1))


def logit_range(alpha):
    """Logits whose forward image lies inside ``[0, 256]``."""
    return math.log(alpha / (1 - alpha)), math.log((1 - alpha) / alpha)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("alpha", [0.05, 0.2, 1e-3])
def test_round_trips(alpha, rng):
    low, high = logit_range(alpha)
    x = tensor(rng.uniform(0.9 * low, 0.9 * high, size=(3,) + EVENT))
    y = tensor(pixels(rng, (3,) + EVENT, 0.5, 255.5))
    check_round_trips(LogitPreprocess(alpha=alpha), x, y, atol=1e-9)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_log_det_matches_autodiff_jacobian(alpha, rng):
    low, high = logit_range(alpha)
    x = tensor(rng.uniform(0.9 * low, 0.9 * high, size=(3,) + EVENT))
    y = tensor(pixels(rng, (3,) + EVENT))
    check_log_det(LogitPreprocess(alpha=alpha), x, y, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_inverse_matches_formula(alpha, rng):
    x = pixels(rng, (2, 3) + EVENT, 0.0, 256.0)
    expected_y, expected_ldj = reference_inverse(x, alpha)
    bijector = LogitPreprocess(alpha=alpha)
    assert_close(bijector.inverse(tensor(x)), expected_y, atol=1e-12)
    ildj = bijector.inverse_log_det_jacobian(tensor(x), event_ndims=3)
    assert tuple(ildj.shape) == (2, 3)
    assert_close(ildj, expected_ldj, atol=1e-10, kind="log-det")


def test_forward_maps_logit_range_onto_pixel_range():
    alpha = 0.05
    low, high = logit_range(alpha)
    out = to_numpy(LogitPreprocess(alpha=alpha).forward(tensor(np.array([low, 0.0, high]).reshape(1, 1, 3, 1))))
    np.testing.assert_allclose(out.ravel(), [0.0, 128.0, 256.0], atol=1e-10)


def test_edges_of_the_pixel_range_are_accepted():
    # 256 itself is admitted: float32 rounds 255 + u up to 256 for u near 1.
    x = tensor(np.array([0.0, 255.999, 256.0, 0.5]).reshape(1, 2, 2, 1))
    bijector = LogitPreprocess()
    assert np.all(np.isfinite(to_numpy(bijector.inverse(x))))
    assert np.all(np.isfinite(to_numpy(bijector.inverse_log_det_jacobian(x, event_ndims=3))))


@pytest.mark.parametrize(
    "value, shown",
    [(256.5, "256.5"), (-0.5, "-0.5"), (300.0, "300"), (-1e-3, "-0.001")],
)
def test_out_of_range_pixels_raise(value, shown):
    x = np.full((2,) + EVENT, 100.0)
    x[1, 2, 3, 1] = value
    with pytest.raises(ValueError, match=re.escape(shown)):
        LogitPreprocess().inverse(tensor(x))


def test_nan_pixels_raise():
    x = np.full((1,) + EVENT, 100.0)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LogitPreprocess().inverse(tensor(x))
    with pytest.raises(ValueError, match="NaN"):
        LogitPreprocess().inverse_log_det_jacobian(tensor(x), event_ndims=3)


def test_range_check_can_be_disabled():
    x = tensor(np.full((1,) + EVENT, 260.0))
    y = LogitPreprocess(check_range=False).inverse(x)
    # Above 256 the map is still the same logit formula while p < 1.
    expected, _ = reference_inverse(to_numpy(x), 0.05)
    assert_close(y, expected, atol=1e-12)


def test_compiled_matches_eager(rng):
    bijector = LogitPreprocess()
    x = tensor(pixels(rng, (3,) + EVENT))

    def fn(x):
        return bijector.inverse(x), bijector.inverse_log_det_jacobian(x, event_ndims=3)

    eager = fn(x)
    graph = compiled(fn)(fresh(x))
    for a, b in zip(eager, graph):
        assert_close(b, a, atol=1e-12)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        # Inside a graph the range check becomes an assertion that fails when it runs.
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("[0, 256")):
            compiled(fn)(tensor(np.full((1,) + EVENT, 257.0)))


@pytest.mark.parametrize("bad", [0.0, 0.5, -0.1, 0.7])
def test_bad_alpha(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        LogitPreprocess(alpha=bad)
