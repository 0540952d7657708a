"""The TFP substrate follows the Keras backend; concreteness checks; test environment."""

import re

import keras
import numpy as np
import pytest

import tfp_realnvp
from helpers import BACKEND, compiled, tensor
from tfp_realnvp.internal import backend


def test_backend_name_is_the_keras_backend():
    assert backend.backend_name() == keras.backend.backend() == BACKEND
    assert BACKEND in backend.SUPPORTED_BACKENDS


def test_tfp_substrate_matches_backend():
    expected = "tensorflow_probability" if BACKEND == "tensorflow" else "tensorflow_probability.substrates.jax"
    assert backend.tfp.__name__ == expected
    assert backend.load_tfp().__name__ == expected
    assert tfp_realnvp.tfb is backend.tfp.bijectors
    assert tfp_realnvp.tfd is backend.tfp.distributions
    assert backend.ps.__name__.startswith(
        "tensorflow_probability.python" if BACKEND == "tensorflow" else "tensorflow_probability.substrates.jax"
    )
    # The distributions work on the backend's arrays.
    value = tfp_realnvp.tfd.Normal(0.0, 1.0).log_prob(keras.ops.zeros((3,)))
    assert keras.ops.is_tensor(value)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(value), np.full(3, -0.5 * np.log(2 * np.pi)), rtol=1e-6)


@pytest.mark.parametrize("name", ["torch", "numpy", "mlx"])
def test_unsupported_backend_is_named(name):
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        backend.load_tfp(name)


def test_is_concrete():
    x = tensor(np.ones(3))
    assert backend.is_concrete(x)
    assert backend.is_concrete(np.ones(3))
    seen = []

    def fn(t):
        seen.append(backend.is_concrete(t))
        return t * 2

    compiled(fn)(x)
    assert seen == [False]


def test_float64_tensors_keep_their_precision():
    x = tensor(np.array([1.0 + 1e-12]))
    assert keras.backend.standardize_dtype(x.dtype) == "float64"
    assert float(keras.ops.convert_to_numpy(x - 1.0)[0]) == pytest.approx(1e-12, rel=1e-3)


def test_public_names():
    for name in tfp_realnvp.__all__:
        assert getattr(tfp_realnvp, name) is not None
    assert issubclass(tfp_realnvp.AffineCoupling, tfp_realnvp.tfb.Bijector)
    assert issubclass(tfp_realnvp.MultiScaleFlow, tfp_realnvp.tfb.Bijector)
    assert issubclass(tfp_realnvp.ResNetConditioner, keras.layers.Layer)
