"""``tfp_realnvp.train`` from Python: the run of the ``train`` command, configured by keywords."""

from __future__ import annotations

import json

import pytest

import tfp_realnvp
import tiny_runs
from tfp_realnvp.training import TrainingConfig, train
from tfp_realnvp.training.run_files import CHECKPOINT_DIRNAME, MODEL_FILENAME, REPORT_FILENAME, sample_grid_name

# The tiny model of tests/tiny_runs.py, as keywords.
TINY = {"num_scales": 1, "num_filters": 4, "num_blocks": 1, "batch_size": 16, "verbose": 0}
if tiny_runs.BACKEND == "tensorflow":
    TINY["jit_compile"] = False


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_runs.write_tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.mark.slow  # two training runs; test_cli covers train in the fast suite
def test_train_writes_the_files_of_the_command_returns_its_report_and_resumes_with_more_steps(data, tmp_path):
    out = tmp_path / "run"
    messages = []
    report = train(data=str(data), steps=6, output_dir=str(out), log=messages.append, **TINY)
    assert json.loads((out / REPORT_FILENAME).read_text()) == json.loads(json.dumps(report))
    assert report["status"] == "finished" and report["steps"] == report["requested_steps"] == 6
    assert report["image_shape"] == [8, 8, 1] and report["resumed_from_step"] is None
    assert report["model"] == str(out / MODEL_FILENAME) and (out / MODEL_FILENAME).is_file()
    assert (out / sample_grid_name(1)).is_file()
    assert tiny_runs.checkpoint_steps(out) and (out / CHECKPOINT_DIRNAME).is_dir()
    assert any(message.startswith("test bits/dim:") for message in messages)
    assert tfp_realnvp.train is train

    # train again with more steps: it resumes from the checkpoint.
    messages = []
    config = TrainingConfig(data=str(data), steps=6, output_dir=str(out), log=messages.append, **TINY)
    report = train(config=config, steps=8)
    assert report["resumed_from_step"] == 6 and report["steps"] == 8
    assert any(message.startswith("resuming from") for message in messages)


def test_a_finished_model_is_not_replaced_without_fresh(data, tmp_path):
    (tmp_path / MODEL_FILENAME).write_text("an earlier model")
    with pytest.raises(FileExistsError, match="pass fresh=True"):
        train(data=str(data), steps=2, output_dir=str(tmp_path), **TINY)
    with pytest.raises(ValueError, match="resume=True: there is no checkpoint"):
        train(data=str(data), steps=2, output_dir=str(tmp_path / "empty"), resume=True, **TINY)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, r"^batch_size must be an integer >= 1; received 0\.$"),
        ({"keep_checkpoints": 1.5}, r"^keep_checkpoints must be an integer >= 1; received 1\.5\.$"),
        ({"checkpoint_every": -1.0}, r"^checkpoint_every must be a finite number > 0; received -1\.0\.$"),
        ({"time_budget": -5.0}, r"^time_budget must be a finite number > 0; received -5\.0\.$"),
        ({"precision": "float16"}, r"precision must be one of"),
        ({"resume": True, "fresh": True}, r"give one of them"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train(output_dir=str(tmp_path), **options)
    assert not any(tmp_path.iterdir())


@pytest.mark.backend_independent
def test_unknown_options_are_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="num_filter"):
        train(output_dir=str(tmp_path), num_filter=4)
