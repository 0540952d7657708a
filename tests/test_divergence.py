"""A diverging run stops at once, keeps its last good checkpoint and saves no NaN model;
commands refuse a model file whose weights are not finite."""

import json

import keras
import numpy as np
import pytest

import tiny_runs
from tfp_realnvp.cli import EXIT_DIVERGED, main
from tfp_realnvp.model.files import NonFiniteWeightsError, load_realnvp, save_realnvp
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.checkpoints import CheckpointCallback, CheckpointManager, TrainingDiverged
from tfp_realnvp.training.steps import StopOnNonFiniteLoss


def _strict_json(path):
    """Parses ``path`` as JSON, failing on the bare ``NaN``/``Infinity`` Python writes."""

    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_runs.write_tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


def _train(data, out, *extra):
    return ["train", "--data", str(data), *tiny_runs.MODEL_FLAGS, "--output-dir", str(out), "--verbose", "0", *extra]


@pytest.mark.slow  # a training run driven to divergence
def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint_and_model(data, tmp_path, capsys):
    # A fresh run with a huge learning rate stops at the first non-finite loss.
    assert main(_train(data, tmp_path, "--steps", "50", "--learning-rate", "100")) == EXIT_DIVERGED
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "No model was saved" in err and "--learning-rate" in err
    step = int(err.split("training diverged at step ")[1].split(":")[0])
    assert step < 50, "training must stop at the first non-finite loss"
    assert not (tmp_path / "model.keras").exists()
    assert tiny_runs.checkpoint_steps(tmp_path) == [], "no checkpoint of NaN weights"
    report = _strict_json(tmp_path / "report.json")
    assert report["status"] == "diverged" and report["diverged_at_step"] == step and report["model"] is None

    # The same command may run again (the report of a run without a model blocks nothing).
    assert main(_train(data, tmp_path, "--steps", "8", "--steps-per-epoch", "4")) == 0
    assert _strict_json(tmp_path / "report.json")["status"] == "finished"
    model_bytes = (tmp_path / "model.keras").read_bytes()
    report_text = (tmp_path / "report.json").read_text()
    capsys.readouterr()

    # Resume at step 8 with a learning rate that diverges long before the next epoch end.
    assert (
        main(_train(data, tmp_path, "--steps", "60", "--steps-per-epoch", "50", "--learning-rate", "100"))
        == EXIT_DIVERGED
    )
    err = capsys.readouterr().err
    assert "checkpoints/step-000000008 (step 8)" in err and "resume from it" in err
    assert tiny_runs.checkpoint_steps(tmp_path) == [4, 8]
    assert (tmp_path / "model.keras").read_bytes() == model_bytes, "the good model must stay"
    assert (tmp_path / "report.json").read_text() == report_text
    assert np.isfinite(np.mean(load_realnvp(tmp_path / "model.keras").bits_per_dim(np.zeros((2, 8, 8, 1), np.uint8))))


@pytest.fixture
def tiny_model():
    model = RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1)
    model.compile()
    return model


def _poison(model):
    variable = model.trainable_weights[0]
    value = np.array(keras.ops.convert_to_numpy(variable))
    value.flat[0] = np.nan
    variable.assign(value)


def test_the_callbacks_refuse_non_finite_losses_and_weights(tiny_model, tmp_path):
    stop = StopOnNonFiniteLoss()
    stop.set_model(tiny_model)
    stop.on_train_batch_end(0, {"loss": 3.5})
    with pytest.raises(TrainingDiverged, match="the loss is nan"):
        stop.on_train_batch_end(0, {"loss": float("nan")})
    with pytest.raises(TrainingDiverged, match="the loss is inf"):
        stop.on_train_batch_end(0, {"loss": np.float32(np.inf)})

    manager = CheckpointManager(tmp_path / "checkpoints")
    saver = CheckpointCallback(manager)
    saver.set_model(tiny_model)
    saver.on_epoch_end(0)
    assert [c.step for c in manager.checkpoints()] == [0]
    _poison(tiny_model)
    with pytest.raises(TrainingDiverged, match="non-finite weights") as info:
        saver.on_epoch_end(1)
    assert info.value.checkpoint.step == 0
    assert [c.step for c in manager.checkpoints()] == [0]


@pytest.fixture
def nan_model_file(tiny_model, tmp_path):
    _poison(tiny_model)
    with pytest.raises(NonFiniteWeightsError, match="non-finite weights"):
        save_realnvp(tiny_model, tmp_path / "refused.keras")
    assert not (tmp_path / "refused.keras").exists()
    path = tmp_path / "nan.keras"
    tiny_model.save(path)  # what a run without these checks used to leave behind
    return path


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_commands_refuse_a_model_with_non_finite_weights(nan_model_file, tmp_path, capsys, command):
    argv = [command, "--model", str(nan_model_file)]
    if command == "sample":
        argv += ["--output", str(tmp_path / "grid.png")]
    else:
        argv += ["--data", "shipped", "--max-images", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(nan_model_file) in err and "non-finite weights" in err
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.tf_only
def test_export_refuses_a_model_with_non_finite_weights(nan_model_file, tmp_path, capsys):
    assert main(["export", "--model", str(nan_model_file), "--output", str(tmp_path / "export"), "--no-describe"]) == 2
    err = capsys.readouterr().err
    assert str(nan_model_file) in err and "non-finite weights" in err
    assert not (tmp_path / "export").exists()
