"""FactorOut: the first half of the channels passes through, the inner bijector gets the rest."""

import re

import numpy as np
import pytest
from helpers import (
    assert_close,
    check_log_det,
    check_round_trips,
    fresh,
    randomize,
    tensor,
    to_numpy,
)

from tfp_realnvp import AffineCoupling, FactorOut, tfb

EVENT = (4, 4, 4)


@pytest.fixture(scope="module")
def factor_out():
    inner = AffineCoupling(mask_type="checkerboard", parity=1, event_shape=(4, 4, 2), num_filters=4, num_blocks=1, dtype="float64")
    randomize(inner.variables, seed=3)
    return FactorOut(inner)


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return tensor(rng.normal(size=(3,) + EVENT)), tensor(rng.normal(size=(3,) + EVENT))


def test_round_trips(factor_out, points):
    x, y = points
    check_round_trips(factor_out, x, y, atol=1e-10)


def test_log_det_matches_autodiff_jacobian(factor_out, points):
    x, y = points
    check_log_det(factor_out, x, y, atol=1e-9)


def test_halves(factor_out, points):
    x, y = points
    inner = factor_out.inner
    for out, inp, inner_fn, inner_ldj in (
        (factor_out.forward(x), x, inner.forward, inner.forward_log_det_jacobian),
        (factor_out.inverse(y), y, inner.inverse, inner.inverse_log_det_jacobian),
    ):
        out, inp = to_numpy(out), to_numpy(inp)
        np.testing.assert_array_equal(out[..., :2], inp[..., :2])
        assert_close(out[..., 2:], inner_fn(tensor(inp[..., 2:])), atol=1e-12)
        assert np.max(np.abs(out[..., 2:] - inp[..., 2:])) > 1e-3
    assert_close(
        factor_out.inverse_log_det_jacobian(fresh(y), event_ndims=3),
        inner.inverse_log_det_jacobian(tensor(to_numpy(y)[..., 2:]), event_ndims=3),
        atol=1e-12,
    )


def test_nested_chain_round_trips(points):
    """FactorOut around a chain with a squeeze, as MultiScaleFlow nests them."""
    inner = AffineCoupling(mask_type="channel", parity=0, event_shape=(2, 2, 8), num_filters=4, num_blocks=1, dtype="float64")
    randomize(inner.variables, seed=4)
    from tfp_realnvp import Squeeze

    bijector = FactorOut(tfb.Chain([tfb.Invert(Squeeze()), inner, Squeeze()]))
    x, y = points
    check_round_trips(bijector, x, y, atol=1e-10)


@pytest.mark.parametrize("channels", [3, 5])
def test_odd_channel_count(channels):
    bijector = FactorOut(tfb.Identity())
    with pytest.raises(ValueError, match=re.escape(f"[1, 4, 4, {channels}]")):
        bijector.forward(tensor(np.zeros((1, 4, 4, channels))))
