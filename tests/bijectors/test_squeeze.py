"""Squeeze: the documented space-to-depth layout, zero log-det, event shapes of
non-square and partially known events.

Exactness (also of ``tfb.Invert(Squeeze())``), log-dets, the rejected shapes and the
cache are checked in ``test_conformance``."""

import re

import numpy as np
import pytest

from helpers import assert_close, tensor, to_numpy
from tfp_realnvp import Squeeze


def reference_squeeze(x: np.ndarray) -> np.ndarray:
    """Output channel ``(2 di + dj) C + c`` at ``(i, j)`` holds input ``(2i + di, 2j + dj, c)``."""
    *batch, h, w, c = x.shape
    out = np.empty(tuple(batch) + (h // 2, w // 2, 4 * c), x.dtype)
    for i in range(h // 2):
        for j in range(w // 2):
            for di in range(2):
                for dj in range(2):
                    k = (2 * di + dj) * c
                    out[..., i, j, k : k + c] = x[..., 2 * i + di, 2 * j + dj, :]
    return out


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return tensor(rng.normal(size=(3, 4, 4, 2))), tensor(rng.normal(size=(3, 2, 2, 8)))


def test_layout_matches_reference(points):
    x, y = points
    squeeze = Squeeze()
    np.testing.assert_array_equal(to_numpy(squeeze.forward(x)), reference_squeeze(to_numpy(x)))
    # inverse is the reference's inverse: squeezing it again gives y back.
    np.testing.assert_array_equal(reference_squeeze(to_numpy(squeeze.inverse(y))), to_numpy(y))


def test_non_square_event_and_batch_dims():
    x = np.arange(2 * 3 * 2 * 6 * 3, dtype=np.float64).reshape(2, 3, 2, 6, 3)
    y = Squeeze().forward(tensor(x))
    assert tuple(y.shape) == (2, 3, 1, 3, 12)
    np.testing.assert_array_equal(to_numpy(y), reference_squeeze(x))
    assert tuple(Squeeze().forward_log_det_jacobian(tensor(x), event_ndims=3).shape) == (2, 3)


def test_log_det_is_zero_with_batch_shape(points):
    x, y = points
    squeeze = Squeeze()
    np.testing.assert_array_equal(to_numpy(squeeze.forward_log_det_jacobian(x, event_ndims=3)), np.zeros(3))
    np.testing.assert_array_equal(to_numpy(squeeze.inverse_log_det_jacobian(y, event_ndims=3)), np.zeros(3))


def test_event_shapes():
    squeeze = Squeeze()
    assert list(squeeze.forward_event_shape([6, 4, 3])) == [3, 2, 12]
    assert list(squeeze.inverse_event_shape([3, 2, 12])) == [6, 4, 3]
    assert list(to_numpy(squeeze.forward_event_shape_tensor([6, 4, 3]))) == [3, 2, 12]
    assert list(to_numpy(squeeze.inverse_event_shape_tensor([3, 2, 12]))) == [6, 4, 3]


def test_partially_known_event_shapes():
    squeeze = Squeeze()
    assert squeeze.forward_event_shape([None, 4, 3]).as_list() == [None, 2, 12]
    assert squeeze.inverse_event_shape([3, None, 8]).as_list() == [6, None, 2]
    # Known dimensions are still checked.
    with pytest.raises(ValueError, match=re.escape("[None, 5, 3]")):
        squeeze.forward_event_shape([None, 5, 3])
    with pytest.raises(ValueError, match=re.escape("[3, None, 6]")):
        squeeze.inverse_event_shape([3, None, 6])


def test_float32_keeps_dtype():
    x = tensor(np.ones((1, 2, 2, 1)), "float32")
    y = Squeeze().forward(x)
    assert y.dtype == x.dtype
    assert_close(y, np.ones((1, 1, 1, 4)), atol=0.0)
