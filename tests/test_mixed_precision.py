"""``RealNVP`` under Keras mixed-precision policies, on TensorFlow and JAX.

The conditioners compute in bfloat16/float16; the pixels, the flow's values and
log-dets, the log-likelihood and the loss stay float32.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import pytest

import tfp_realnvp
from helpers import dtype_name, perturb, to_numpy
from tfp_realnvp.internal.compiled import CompiledFunction

BACKEND = keras.backend.backend()
TINY = {"num_filters": 8, "num_blocks": 1}
COMPILE = {"jit_compile": False} if BACKEND == "tensorflow" else {}


@contextlib.contextmanager
def global_policy(name: str):
    """Sets Keras' global dtype policy inside the block and restores float32 after it."""
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def copy_weights(source, target) -> None:
    pairs = list(zip(source.variables, target.variables))
    assert len(source.variables) == len(target.variables)
    for a, b in pairs:
        assert tuple(a.shape) == tuple(b.shape), (a.path, b.path)
        b.assign(to_numpy(a))


@pytest.fixture(autouse=True)
def _float32_after_each_test():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (8, 8, 8, 2)).astype(np.uint8)


@pytest.fixture(scope="module")
def float32_model():
    keras.utils.set_random_seed(1)
    model = tfp_realnvp.RealNVP((8, 8, 2), seed=1, **TINY)
    # Off the identity initialisation, reproducibly.
    perturb(model.trainable_variables, seed=1, stddev=0.1)
    return model


def test_policy_reaches_every_layer_and_is_restored():
    with global_policy("mixed_bfloat16"):
        model = tfp_realnvp.RealNVP((8, 8, 2), **TINY)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.dtype_policy.name == "mixed_bfloat16"
    for layer in model.flow_layers:
        assert layer.dtype_policy.name == "mixed_bfloat16", layer.name
    assert model.flow.couplings[0].conditioner.compute_dtype == "bfloat16"
    # Weights, including the batch-norm statistics, are float32.
    assert {dtype_name(v) for v in model.variables if "seed_generator" not in v.path} == {"float32"}
    # The dtype argument does the same as the global policy.
    explicit = tfp_realnvp.RealNVP((8, 8, 2), dtype="mixed_float16", **TINY)
    assert explicit.flow.couplings[-1].conditioner.compute_dtype == "float16"


@pytest.mark.slow  # trains two models
def test_bfloat16_keeps_float32_numbers_matches_float32_and_trains(float32_model, images):
    """One bfloat16 model: its numbers against float32 first, then a few training steps."""
    with global_policy("mixed_bfloat16"):
        model = tfp_realnvp.RealNVP((8, 8, 2), seed=1, **TINY)
    copy_weights(float32_model, model)

    x = keras.ops.convert_to_tensor(images)
    assert dtype_name(model._pixels(x, training=False)) == "float32"
    outputs = CompiledFunction(
        model,
        lambda x: {
            "log_prob": model(x),
            "z": model.flow.inverse(x),
            "ildj": model.flow.inverse_log_det_jacobian(x, event_ndims=3),
            "loss": model.compute_loss(y_pred=model(x)),
            "conditioner": model.flow.couplings[0].conditioner(x),
        },
    )(images.astype(np.float32) + 0.5)
    assert dtype_name(outputs["conditioner"]) == "bfloat16", "the networks really run in bfloat16"
    for key in ("log_prob", "z", "ildj", "loss"):
        assert dtype_name(outputs[key]) == "float32", key
        assert np.all(np.isfinite(to_numpy(outputs[key]))), key

    expected = float32_model.bits_per_dim(images)
    actual = model.bits_per_dim(images)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=0.02)
    # bfloat16 is not float32: the two differ, a little.
    assert np.max(np.abs(actual - expected)) > 0

    # Training: the same model.
    with global_policy("mixed_bfloat16"):
        model.compile(**COMPILE)
    before = [to_numpy(v) for v in model.trainable_variables]
    history = model.fit(images, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert int(to_numpy(model.optimizer.iterations)) == 4
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["bits_per_dim"]))
    assert 6.0 < history["bits_per_dim"][0] < 10.0
    changed = [not np.array_equal(a, to_numpy(b)) for a, b in zip(before, model.trainable_variables)]
    assert all(changed)
    assert {dtype_name(v) for v in model.trainable_variables} == {"float32"}
    assert np.all(np.isfinite(model.bits_per_dim(images)))


@pytest.mark.slow  # a training run
def test_float16_trains_with_loss_scaling(images):
    keras.utils.set_random_seed(3)
    with global_policy("mixed_float16"):
        model = tfp_realnvp.RealNVP((8, 8, 2), num_scales=1, seed=3, **TINY)
        model.compile(**COMPILE)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, keras.optimizers.Adam)
    assert model.optimizer.inner_optimizer.global_clipnorm == 1.0
    history = model.fit(images, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["bits_per_dim"]))
    assert 6.0 < history["bits_per_dim"][0] < 10.0
    assert int(to_numpy(model.optimizer.iterations)) == 4
    assert float(to_numpy(model.optimizer.dynamic_scale)) > 1.0
    assert np.all(np.isfinite(model.bits_per_dim(images)))
