"""WeightNormConv2D: kernel = g * v / ||v||, zero start, same padding, config."""

import re

import keras
import numpy as np
import pytest

from helpers import assert_close, randomize, tensor, to_numpy
from tfp_realnvp import WeightNormConv2D


def built(filters=5, in_channels=3, **kwargs):
    layer = WeightNormConv2D(filters, dtype="float64", **kwargs)
    layer.build((None, 6, 6, in_channels))
    return layer


def test_kernel_norm_equals_g_per_output_channel():
    layer = built()
    randomize(layer.variables, seed=0, stddev=1.0)
    kernel = to_numpy(layer.kernel())
    g = to_numpy(layer.g)
    assert kernel.shape == (3, 3, 3, 5)
    norms = np.sqrt(np.sum(kernel**2, axis=(0, 1, 2)))
    assert_close(norms, np.abs(g), atol=1e-12)
    # Direction from v, sign and length from g.
    v = to_numpy(layer.v)
    direction = v / np.sqrt(np.sum(v**2, axis=(0, 1, 2), keepdims=True))
    assert_close(kernel, g * direction, atol=1e-12)


def test_kernel_norm_is_independent_of_v_scale():
    layer = built()
    randomize(layer.variables, seed=1)
    kernel = to_numpy(layer.kernel())
    layer.v.assign(to_numpy(layer.v) * 7.5)
    assert_close(layer.kernel(), kernel, atol=1e-12)


def test_default_init_has_unit_norm_filters():
    layer = built()
    norms = np.sqrt(np.sum(to_numpy(layer.kernel()) ** 2, axis=(0, 1, 2)))
    assert_close(norms, np.ones(5), atol=1e-10)


def test_zero_init_outputs_zeros():
    layer = built(zero_init=True)
    x = tensor(np.random.default_rng(0).normal(size=(2, 6, 6, 3)))
    y = to_numpy(layer(x))
    assert y.shape == (2, 6, 6, 5)
    np.testing.assert_array_equal(y, np.zeros_like(y))


def test_call_is_a_same_padded_convolution():
    layer = built(filters=2, in_channels=1)
    randomize(layer.variables, seed=2)
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 1))
    y = to_numpy(layer(tensor(x)))
    kernel = to_numpy(layer.kernel())
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.zeros((1, 6, 6, 2))
    for i in range(6):
        for j in range(6):
            patch = padded[0, i : i + 3, j : j + 3, :]
            expected[0, i, j] = np.tensordot(patch, kernel, axes=3)
    expected += to_numpy(layer.bias)
    assert_close(y, expected, atol=1e-12)


def test_config_round_trip():
    layer = WeightNormConv2D(7, kernel_size=5, zero_init=True, name="wn")
    clone = WeightNormConv2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.zero_init, clone.name) == (7, 5, True, "wn")
    assert clone.compute_output_shape((None, 4, 4, 3)) == (None, 4, 4, 7)
    # Registered for Keras serialization.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, WeightNormConv2D) and restored.get_config() == layer.get_config()


@pytest.mark.parametrize("key, bad", [("filters", 0), ("filters", -2), ("filters", 1.5), ("kernel_size", 0)])
def test_bad_arguments(key, bad):
    kwargs = {"filters": 4, key: bad}
    filters = kwargs.pop("filters")
    with pytest.raises(ValueError, match=re.escape(f"{key} must be an integer >= 1; received {bad!r}.")):
        WeightNormConv2D(filters, **kwargs)
