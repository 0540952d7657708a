"""TensorBoard logs, read back with TensorBoard's own reader: ``train(tensorboard=...)``,
``TensorBoardLog`` with ``fit``'s validation, and ``keras.callbacks.TensorBoard``."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

import tiny_runs
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training import train
from tfp_realnvp.training.callbacks import KERAS_TENSORBOARD_NEEDS, TensorBoardLog
from tfp_realnvp.training.tensorboard import EventWriter

TINY = {"num_scales": 1, "num_filters": 4, "num_blocks": 1, "batch_size": 16, "verbose": 0}
if tiny_runs.BACKEND == "tensorflow":
    TINY["jit_compile"] = False
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def _read(directory) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def _scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in events.Scalars(tag)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tiny_runs.write_tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")
    out = tmp_path_factory.mktemp("run")
    logs = out / "logs"
    # 64 training images in batches of 16: two epochs of 4 steps.
    report = train(data=str(data), steps=8, output_dir=str(out / "run"), tensorboard=str(logs), **TINY)
    return logs, report


def test_train_logs_loss_bits_per_dim_and_learning_rate_per_epoch(run):
    logs, report = run
    events = _read(logs / "train")
    assert {"epoch_loss", "epoch_bits_per_dim", "epoch_learning_rate"} <= set(events.Tags()["scalars"])
    history = report["history"]
    assert len(history["bits_per_dim"]) == 2
    steps = list(range(1, len(history["bits_per_dim"]) + 1))
    for tag, expected in (("epoch_bits_per_dim", history["bits_per_dim"]), ("epoch_loss", history["loss"])):
        logged = _scalars(events, tag)
        assert [step for step, _ in logged] == steps
        np.testing.assert_allclose([value for _, value in logged], expected, rtol=1e-6)
    assert [value for _, value in _scalars(events, "epoch_learning_rate")] == pytest.approx([1e-3] * 2)


def test_train_logs_the_test_split_as_validation(run):
    logs, report = run
    events = _read(logs / "validation")
    assert {"epoch_loss", "epoch_bits_per_dim"} <= set(events.Tags()["scalars"])
    values = _scalars(events, "epoch_bits_per_dim")
    assert [step for step, _ in values] == [1, 2]
    # The same test images as the report's test bits/dim, with other dequantization noise.
    assert values[-1][1] == pytest.approx(report["test_bits_per_dim"], abs=0.05)


def test_train_logs_the_sample_grid_of_every_epoch(run):
    logs, _ = run
    events = _read(logs / "samples")
    images = events.Images("samples")
    assert [image.step for image in images] == [1, 2]
    # 64 samples of 8x8 in an 8x8 grid with 1-pixel padding.
    assert (images[0].width, images[0].height) == (8 * 9 + 1, 8 * 9 + 1)
    assert images[0].encoded_image_string.startswith(b"\x89PNG")


def _tiny_model() -> RealNVP:
    model = RealNVP(image_shape=(8, 8, 1), num_scales=1, num_filters=4, num_blocks=1)
    model.compile(learning_rate=2e-3, jit_compile=False if tiny_runs.BACKEND == "tensorflow" else "auto")
    return model


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 1)).astype(np.uint8)


def test_tensorboard_log_writes_fit_validation_metrics(tmp_path):
    model = _tiny_model()
    history = model.fit(
        _images(32),
        batch_size=16,
        epochs=2,
        validation_data=_images(16, seed=1),
        callbacks=[TensorBoardLog(str(tmp_path))],
        verbose=0,
    )
    train_events, validation_events = _read(tmp_path / "train"), _read(tmp_path / "validation")
    for events, key in ((train_events, "bits_per_dim"), (validation_events, "val_bits_per_dim")):
        logged = _scalars(events, "epoch_bits_per_dim")
        assert [step for step, _ in logged] == [1, 2]
        np.testing.assert_allclose([value for _, value in logged], history.history[key], rtol=1e-6)
    assert [value for _, value in _scalars(train_events, "epoch_learning_rate")] == pytest.approx([2e-3] * 2)


def test_tensorboard_log_refuses_no_directory():
    with pytest.raises(ValueError, match="received ''"):
        TensorBoardLog("")


def test_event_writer_refuses_what_is_not_an_image(tmp_path):
    writer = EventWriter(tmp_path)
    with pytest.raises(ValueError, match=r"received float64 \[4, 4\]"):
        writer.image("x", np.zeros((4, 4)), step=0)
    writer.close()
    writer.close()


@pytest.mark.skipif(not HAS_TENSORFLOW, reason="keras.callbacks.TensorBoard writes through TensorFlow")
def test_keras_tensorboard_callback_writes_what_the_reader_reads(tmp_path):
    model = _tiny_model()
    history = model.fit(
        _images(32), batch_size=16, epochs=2, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))], verbose=0
    )
    events = _read(tmp_path / "train")
    logged = events.Tensors("epoch_bits_per_dim")
    assert [event.step for event in logged] == [0, 1]
    values = [float(tensor_util.make_ndarray(event.tensor_proto)) for event in logged]
    np.testing.assert_allclose(values, history.history["bits_per_dim"], rtol=1e-6)


@pytest.mark.skipif(HAS_TENSORFLOW, reason="TensorFlow is installed")
def test_keras_tensorboard_callback_without_tensorflow_says_what_to_install(tmp_path):
    with pytest.raises(ImportError) as raised:
        keras.callbacks.TensorBoard(str(tmp_path))
    assert str(raised.value) == KERAS_TENSORBOARD_NEEDS and "\n" not in KERAS_TENSORBOARD_NEEDS
    assert "pip install tensorflow-cpu tensorboard" in str(raised.value)
    assert not list(tmp_path.iterdir())
