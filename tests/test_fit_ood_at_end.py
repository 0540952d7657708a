"""``train(..., fit_ood=N)`` / ``train --fit-ood N``: the saved model carries its OOD statistics."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import tiny_runs
from tfp_realnvp.cli import build_parser
from tfp_realnvp.training import TrainingConfig, train
from tfp_realnvp.training.run_files import MODEL_FILENAME, REPORT_FILENAME

TINY = {"num_scales": 1, "num_filters": 4, "num_blocks": 1, "batch_size": 16, "verbose": 0}
if tiny_runs.BACKEND == "tensorflow":
    TINY["jit_compile"] = False


@pytest.mark.slow  # a full export
def test_the_saved_model_scores_novel_inputs(tmp_path):
    data = tiny_runs.write_tiny_npz(tmp_path / "tiny.npz")
    messages = []
    report = train(data=str(data), steps=2, output_dir=str(tmp_path / "run"), fit_ood=40, log=messages.append, **TINY)
    assert report["ood_statistics"]["num_images"] == 40
    assert json.loads((tmp_path / "run" / REPORT_FILENAME).read_text())["ood_statistics"] == report["ood_statistics"]
    assert any(message.startswith("fitted the OOD statistics on 40 training images") for message in messages)
    model = keras.models.load_model(tmp_path / "run" / MODEL_FILENAME)
    assert model.ood_statistics is not None and len(model.ood_statistics.train_bits_per_dim) == 40
    test = np.load(data)["x_test"]
    constant = np.broadcast_to(np.arange(0, 256, 16, dtype=np.uint8)[:, None, None, None], test.shape)
    scores = model.ood_scores(np.concatenate([test, constant]))
    assert np.all(np.isfinite(scores)) and scores[len(test) :].min() > np.median(scores[: len(test)])


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fit_ood": -1}, r"^fit_ood must be an integer >= 0; received -1\.$"),
        ({"fit_ood": 1}, r"fit_ood needs at least 2 images .*received 1\."),
        ({"fit_ood": 100, "stream": True}, r"fit_ood=100 needs the training images in memory"),
    ],
)
def test_bad_values_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**options)


@pytest.mark.backend_independent
def test_the_flag_reaches_the_config():
    from tfp_realnvp.cli.train import training_config

    args = build_parser().parse_args(["train", "--data", "shipped", "--fit-ood", "500"])
    assert training_config(args, command="train").fit_ood == 500
    assert training_config(build_parser().parse_args(["train"]), command="train").fit_ood == 0
