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
from tfp_realnvp.internal import summary
from tfp_realnvp.internal.backend import set_tensorboard_summary_module
from tfp_realnvp.internal.summary import SUMMARY
from tfp_realnvp.internal.tensorboard import EventWriter
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.callbacks import TensorBoardLog
from tfp_realnvp.training.run import run_training

# The tiny model of tests/tiny_runs.py on its data. On JAX its steps are then the
# programs that the suite's other tiny runs compile, which its compilation cache holds
# once. On TensorFlow every model traces its own: there it leaves out the batch norm
# inside the conditioners (a third fewer graph ops to trace) and XLA (faster to build).
TINY = {"num_scales": 1, "num_filters": 4, "num_blocks": 1, "batch_size": 16, "verbose": 0}
if tiny_runs.BACKEND == "tensorflow":
    TINY.update(conditioner_batch_norm=False, jit_compile=False)
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def _read(directory) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def _scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in events.Scalars(tag)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``run_training`` (what ``train`` runs) with TensorBoard logs: its log directory,
    report and model."""
    data = tiny_runs.write_tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")
    out = tmp_path_factory.mktemp("run")
    logs = out / "logs"
    # 64 training images in batches of 16: two epochs of 4 steps.
    result = run_training(data=str(data), steps=8, output_dir=str(out / "run"), tensorboard=str(logs), **TINY)
    return logs, result.report, result.model


@pytest.fixture(scope="module")
def run(trained):
    """The run's log directory and report."""
    logs, report, _ = trained
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


@pytest.fixture(scope="module")
def tiny_model(trained) -> RealNVP:
    """One compiled model for the tests of the callbacks: each fits it anew for two
    epochs and compares the logs with that fit's history. It is the model that the run
    trained (8x8x1 images, batches of 16, as here), so its train, test and batch-norm
    steps are traced once for the run and these tests. Its learning rate becomes 2e-3
    (a variable: nothing is traced again), unlike the run's default 1e-3, so that a
    logged rate is seen to be the optimizer's."""
    _, _, model = trained
    model.optimizer.learning_rate = 2e-3
    return model


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 1)).astype(np.uint8)


def test_tensorboard_log_writes_fit_validation_metrics(tiny_model, tmp_path):
    model = tiny_model
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
def test_keras_tensorboard_callback_writes_what_the_reader_reads(tiny_model, tmp_path):
    model = tiny_model
    history = model.fit(
        _images(32), batch_size=16, epochs=2, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))], verbose=0
    )
    events = _read(tmp_path / "train")
    logged = events.Tensors("epoch_bits_per_dim")
    assert [event.step for event in logged] == [0, 1]
    values = [float(tensor_util.make_ndarray(event.tensor_proto)) for event in logged]
    np.testing.assert_allclose(values, history.history["bits_per_dim"], rtol=1e-6)


def _keras_tensorboard_with_package_summaries(log_dir, **kwargs) -> keras.callbacks.TensorBoard:
    """Keras' callback writing through ``internal.summary`` (what ``fit`` does without TensorFlow)."""
    callback = keras.callbacks.TensorBoard(str(log_dir), **kwargs)
    assert set_tensorboard_summary_module(callback, SUMMARY)
    return callback


def test_keras_tensorboard_callback_through_the_tensorboard_package(tiny_model, tmp_path):
    """The stand-in for tf.summary: scalars (train and validation), weight histograms and
    images that TensorBoard's reader reads back, with fit's values."""
    model = tiny_model
    callback = _keras_tensorboard_with_package_summaries(tmp_path, histogram_freq=1, write_images=True)
    images = _images(48)
    history = model.fit(
        images[:32], validation_data=images[32:], batch_size=16, epochs=2, callbacks=[callback], verbose=0
    )
    train_events, validation_events = _read(tmp_path / "train"), _read(tmp_path / "validation")
    for events, prefix in ((train_events, ""), (validation_events, "val_")):
        logged = _scalars(events, "epoch_bits_per_dim")
        assert [step for step, _ in logged] == [0, 1]
        np.testing.assert_allclose([v for _, v in logged], history.history[prefix + "bits_per_dim"], rtol=1e-6)
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    np.testing.assert_allclose([v for _, v in _scalars(train_events, "epoch_learning_rate")], [rate, rate], rtol=1e-6)
    histograms = [tag for tag in train_events.Tags()["tensors"] if tag.endswith("/histogram")]
    assert len(histograms) >= len(model.weights) // 2
    assert train_events.Tags()["images"]


def test_package_summaries_refuse_profiling_and_write_only_inside_a_writer(tmp_path):
    assert not summary.scalar("x", 1.0, step=0)
    writer = summary.create_file_writer(str(tmp_path))
    with writer.as_default(step=3):
        assert summary.scalar("x", 1.5)
        with summary.record_if(lambda: False):
            assert not summary.scalar("y", 2.0)
        with pytest.raises(ValueError, match=r"received \[2, 3\]"):
            summary.image("picture", np.zeros((2, 3)))
    writer.close()
    assert _scalars(_read(tmp_path), "x") == [(3, 1.5)]
    with pytest.raises(ImportError, match="profile_batch"):
        summary.trace_on(graph=True, profiler=False)


@pytest.mark.skipif(HAS_TENSORFLOW, reason="with TensorFlow, Keras' callback keeps tf.summary")
def test_keras_tensorboard_callback_in_fit_without_tensorflow(tiny_model, tmp_path):
    model = tiny_model
    history = model.fit(
        _images(32), batch_size=16, epochs=2, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))], verbose=0
    )
    logged = _scalars(_read(tmp_path / "train"), "epoch_bits_per_dim")
    assert [step for step, _ in logged] == [0, 1]
    np.testing.assert_allclose([v for _, v in logged], history.history["bits_per_dim"], rtol=1e-6)
