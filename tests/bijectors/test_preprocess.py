"""LogitPreprocess: the pixel-to-logit formula, its log-det, its domain, and the
forward map staying inside it.

Exactness, log-dets against autodiff, event shapes and the cache are checked in
``test_conformance``, for the default margin and for ``alpha`` 0.2 and 1e-3."""

import math
import re

import numpy as np
import pytest

from helpers import (
    BACKEND,
    assert_close,
    compiled,
    dtype_name,
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


@pytest.mark.parametrize("alpha", [0.05, 0.1, 1e-3])
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


def domain(alpha):
    return -256.0 * alpha / (1.0 - 2.0 * alpha), 256.0 * (1.0 - alpha) / (1.0 - 2.0 * alpha)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_domain_is_the_open_range_of_forward(alpha):
    bijector = LogitPreprocess(alpha=alpha)
    assert bijector.domain == pytest.approx(domain(alpha), rel=1e-15)
    low, high = domain(alpha)
    # Just inside both ends, and beyond [0, 256): finite logits and log-dets.
    x = tensor(np.array([low + 1e-6, -1.0, 0.0, 128.0, 255.999, 256.0, 260.0, high - 1e-4]).reshape(1, 2, 4, 1))
    y = to_numpy(bijector.inverse(x))
    assert np.all(np.isfinite(y)) and np.all(np.diff(y.ravel()) > 0)
    assert np.all(np.isfinite(to_numpy(bijector.inverse_log_det_jacobian(x, event_ndims=3))))
    expected, _ = reference_inverse(to_numpy(x), alpha)
    assert_close(y, expected, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_stays_strictly_inside_the_domain(dtype):
    """Extreme logits round to the ends of the domain; forward keeps them inside, so
    the inverse of every forward output is finite."""
    bijector = LogitPreprocess()
    logits = np.array([-1e4, -60.0, -30.0, -18.0, 18.0, 30.0, 60.0, 1e4]).reshape(1, 2, 4, 1)
    x = bijector.forward(tensor(logits, dtype))
    assert dtype_name(x) == dtype
    low, high = domain(0.05)
    values = to_numpy(x).astype(np.float64)
    assert np.all(values > np.asarray(low, dtype)) and np.all(values < np.asarray(high, dtype))
    back = to_numpy(bijector.inverse(fresh(x)))
    assert np.all(np.isfinite(back)) and np.all(np.abs(back) > 10.0)
    assert np.all(np.sign(back) == np.sign(logits))
    assert np.all(np.isfinite(to_numpy(bijector.inverse_log_det_jacobian(fresh(x), event_ndims=3))))
    # Moderate logits are untouched by the clip: the plain formula.
    moderate = np.linspace(-8.0, 8.0, 16).reshape(1, 4, 4, 1)
    expected = 256.0 * (1.0 / (1.0 + np.exp(-moderate)) - 0.05) / 0.9
    tol = 1e-4 if dtype == "float32" else 1e-10
    assert_close(bijector.forward(tensor(moderate, dtype)), expected, atol=tol)


def test_outside_the_domain_is_not_checked_by_default():
    x = tensor(np.full((1,) + EVENT, 300.0))
    assert not np.all(np.isfinite(to_numpy(LogitPreprocess().inverse(x))))


@pytest.mark.parametrize(
    "value, shown",
    [(270.5, "270.5"), (-14.5, "-14.5"), (300.0, "300"), (np.nan, "NaN")],
)
def test_validate_args_checks_the_domain(value, shown):
    x = np.full((2,) + EVENT, 100.0)
    x[1, 2, 3, 1] = value
    bijector = LogitPreprocess(validate_args=True)
    with pytest.raises(ValueError, match=re.escape(shown)):
        bijector.inverse(tensor(x))
    with pytest.raises(ValueError, match=re.escape(shown)):
        bijector.inverse_log_det_jacobian(tensor(x), event_ndims=3)
    x[1, 2, 3, 1] = 265.0
    assert np.all(np.isfinite(to_numpy(bijector.inverse(tensor(x)))))


def test_compiled_matches_eager(rng):
    bijector = LogitPreprocess(validate_args=True)
    x = tensor(pixels(rng, (3,) + EVENT))

    def fn(x):
        return bijector.inverse(x), bijector.inverse_log_det_jacobian(x, event_ndims=3)

    eager = fn(x)
    graph = compiled(fn)(fresh(x))
    for a, b in zip(eager, graph):
        assert_close(b, a, atol=1e-12)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        # Inside a graph the domain check becomes an assertion that fails when it runs.
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("[-14.2222, 270.222")):
            compiled(fn)(tensor(np.full((1,) + EVENT, 280.0)))


@pytest.mark.parametrize("bad", [0.0, 0.5, -0.1, 0.7, float("nan"), "0.1"])
def test_bad_alpha(bad):
    with pytest.raises(
        ValueError, match=re.escape(f"alpha must be a finite number > 0.0 and < 0.5; received {bad!r}.")
    ):
        LogitPreprocess(alpha=bad)
