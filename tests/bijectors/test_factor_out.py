"""FactorOut: the first half of the channels passes through, the inner bijector gets the
rest, in both batch-norm modes.

Exactness, log-dets, event shapes and the cache are checked in ``test_conformance``,
also for a FactorOut around a chain with a squeeze, as ``MultiScaleFlow`` nests them."""

import re

import numpy as np
import pytest

from helpers import (
    assert_close,
    fresh,
    randomize,
    tensor,
    to_numpy,
)
from tfp_realnvp import AffineCoupling, BatchNormalization, FactorOut, Squeeze

EVENT = (4, 4, 4)


@pytest.fixture(scope="module")
def factor_out():
    inner = AffineCoupling(
        mask_type="checkerboard", parity=1, event_shape=(4, 4, 2), num_filters=4, num_blocks=1, dtype="float64"
    )
    randomize(inner.variables, seed=3)
    return FactorOut(inner)


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return tensor(rng.normal(size=(3,) + EVENT)), tensor(rng.normal(size=(3,) + EVENT))


def test_halves(factor_out, points):
    x, y = points
    inner = factor_out.inner
    for out, inp, inner_fn in (
        (factor_out.forward(x), x, inner.forward),
        (factor_out.inverse(y), y, inner.inverse),
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


def test_training_reaches_the_inner_bijector(points):
    bn = BatchNormalization(event_shape=(4, 4, 2), dtype="float64")
    randomize(bn.variables, seed=5)
    bijector = FactorOut(bn)
    _, y = points
    count = float(to_numpy(bn.state.num_updates))
    inference = to_numpy(bijector.inverse(y))
    assert float(to_numpy(bn.state.num_updates)) == count
    training = to_numpy(bijector.inverse(y, training=True))
    assert float(to_numpy(bn.state.num_updates)) == count + 1
    np.testing.assert_array_equal(training[..., :2], inference[..., :2])
    # Batch statistics of the second half: per-channel mean beta.
    assert_close(training[..., 2:].mean(axis=(0, 1, 2)), to_numpy(bn.state.beta), atol=1e-6)
    assert np.max(np.abs(training - inference)) > 1e-3


def test_inner_bijector_must_keep_the_event_shape():
    bijector = FactorOut(Squeeze())
    with pytest.raises(ValueError, match=re.escape("[4, 4, 8]")) as info:
        bijector.forward_event_shape([4, 4, 8])
    assert "keeps the event shape" in str(info.value)
    with pytest.raises(ValueError, match=re.escape("[4, 4, 8]")):
        bijector.forward(tensor(np.zeros((1, 4, 4, 8))))
