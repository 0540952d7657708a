"""Keras' monitor callbacks on ``val_bits_per_dim`` in their default ``mode="auto"``: the
model's bits/dim metric says that lower is better."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tfp_realnvp


def _tiny_model() -> tfp_realnvp.RealNVP:
    model = tfp_realnvp.RealNVP(image_shape=(8, 8, 1), num_scales=1, num_filters=4, num_blocks=1, refresh_batches=1)
    model.compile()
    return model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (24, 8, 8, 1)).astype("uint8")


def test_monitor_callbacks_find_that_bits_per_dim_should_fall(images, tmp_path):
    model = _tiny_model()
    best = tmp_path / "best.keras"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_bits_per_dim", patience=1),
        keras.callbacks.ModelCheckpoint(best, monitor="val_bits_per_dim", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_bits_per_dim", patience=1),
    ]
    history = model.fit(images, batch_size=8, epochs=2, validation_data=(images[:8],), callbacks=callbacks, verbose=0)
    assert len(history.history["val_bits_per_dim"]) == 2
    assert all(callback.monitor_op is keras.ops.less for callback in callbacks)
    # Lower is better: the best value each callback kept is the lowest one seen.
    lowest = min(history.history["val_bits_per_dim"])
    assert callbacks[0].best == pytest.approx(lowest) and callbacks[1].best == pytest.approx(lowest)
    assert best.is_file()
    restored = keras.saving.load_model(best)
    assert restored.evaluate(images[:8], verbose=0, return_dict=True)["bits_per_dim"] == pytest.approx(
        callbacks[1].best, rel=1e-5
    )


def test_the_metric_keeps_its_name_and_resets(images):
    model = _tiny_model()
    assert [m.name for m in model.metrics] == ["loss", "bits_per_dim"]
    first = model.evaluate(images[:8], verbose=0, return_dict=True)
    again = model.evaluate(images[:8], verbose=0, return_dict=True)
    assert set(first) == {"loss", "bits_per_dim"}
    assert again["bits_per_dim"] == pytest.approx(first["bits_per_dim"], rel=1e-6)
