"""Keras' monitor callbacks on ``val_bits_per_dim`` in their default ``mode="auto"``: the
model's bits/dim metric says that lower is better."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tfp_realnvp

TENSORFLOW = keras.backend.backend() == "tensorflow"


@pytest.fixture(scope="module")
def model() -> tfp_realnvp.RealNVP:
    """One compiled model for both tests: the monitor test fits it, the metric test
    evaluates it; batches of 16 in both, so its test step is compiled once for them.

    It is the tiny model of ``tests/tiny_runs.py`` (one scale, one residual block of four
    filters, 8x8x1 images in batches of 16). On JAX its train, test and batch-norm steps
    are then the programs that the tiny training runs of the suite compile, which the
    suite's compilation cache holds once. On TensorFlow every model traces its own
    steps: there it leaves out the batch norm inside the conditioners (a third fewer
    graph ops to trace) and XLA (faster to build).
    """
    model = tfp_realnvp.RealNVP(
        image_shape=(8, 8, 1),
        num_scales=1,
        num_filters=4,
        num_blocks=1,
        conditioner_batch_norm=not TENSORFLOW,
        refresh_batches=1,
    )
    # On JAX without jit it would run eagerly.
    model.compile(jit_compile=False if TENSORFLOW else "auto")
    return model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1)).astype("uint8")


def test_monitor_callbacks_find_that_bits_per_dim_should_fall(model, images, tmp_path):
    best = tmp_path / "best.keras"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_bits_per_dim", patience=1),
        keras.callbacks.ModelCheckpoint(best, monitor="val_bits_per_dim", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_bits_per_dim", patience=1),
    ]
    history = model.fit(images, batch_size=16, epochs=2, validation_data=(images[:16],), callbacks=callbacks, verbose=0)
    assert len(history.history["val_bits_per_dim"]) == 2
    assert all(callback.monitor_op is keras.ops.less for callback in callbacks)
    # Lower is better: the best value each callback kept is the lowest one seen.
    lowest = min(history.history["val_bits_per_dim"])
    assert callbacks[0].best == pytest.approx(lowest) and callbacks[1].best == pytest.approx(lowest)
    assert best.is_file()
    restored = keras.saving.load_model(best)
    # Eagerly on TensorFlow: one evaluation costs less than tracing the restored model's
    # test step. On JAX that step is the program compiled for the validation above.
    restored.run_eagerly = TENSORFLOW
    assert restored.evaluate(images[:16], verbose=0, return_dict=True)["bits_per_dim"] == pytest.approx(
        callbacks[1].best, rel=1e-5
    )


def test_the_metric_keeps_its_name_and_resets(model, images):
    assert [m.name for m in model.metrics] == ["loss", "bits_per_dim"]
    first = model.evaluate(images[:16], verbose=0, return_dict=True)
    again = model.evaluate(images[:16], verbose=0, return_dict=True)
    assert set(first) == {"loss", "bits_per_dim"}
    assert again["bits_per_dim"] == pytest.approx(first["bits_per_dim"], rel=1e-6)
