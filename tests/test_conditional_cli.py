"""The command line for class-conditional models: train --conditional, evaluate
(conditional bits/dim and classification accuracy), sample --label and a grid with one
row per class, resume, and labels from a folder with one subdirectory per class."""

import json

import keras
import numpy as np
import pytest

from tfp_realnvp.cli import main

TINY = [
    "--num-scales",
    "1",
    "--num-filters",
    "4",
    "--num-blocks",
    "1",
    "--max-images",
    "96",
    "--batch-size",
    "32",
    "--verbose",
    "0",
]
if keras.backend.backend() == "tensorflow":
    TINY += ["--jit-compile", "false"]


@pytest.mark.slow  # a training run; the README's class-conditional commands run in the fast suite
def test_train_conditional_then_evaluate_and_sample_by_label(tmp_path, capsys):
    """One conditional run: its report and grid; ``evaluate`` and ``sample --label`` of its model."""
    from PIL import Image

    trained = tmp_path / "conditional_run"
    assert main(["train", "--conditional", *TINY, "--steps", "2", "--output-dir", str(trained)]) == 0

    # The report: bits/dim given the labels and the accuracy of classify.
    report = json.loads((trained / "report.json").read_text())
    assert report["num_classes"] == 10 and report["config"]["num_classes"] == 10
    assert np.isfinite(report["test_bits_per_dim"])
    assert 0.0 <= report["test_classify_accuracy"] <= 1.0 and report["test_classify_images"] == 96
    grid = np.asarray(Image.open(trained / "samples_epoch001.png"))
    # One row per class, 8 samples each: 10 x 8 tiles of 28 pixels with 1-pixel padding, scale 2.
    assert grid.shape == (2 * (10 * 29 + 1), 2 * (8 * 29 + 1))

    # evaluate: the conditional bits/dim and the accuracy of the report.
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained / "model.keras"), "--max-images", "96"]) == 0
    printed = capsys.readouterr().out
    assert float(printed.split("conditional bits/dim:")[1].split()[0]) == pytest.approx(
        report["test_bits_per_dim"], abs=1e-3
    )
    accuracy = float(printed.split("classification accuracy:")[1].split()[0])
    assert accuracy == pytest.approx(report["test_classify_accuracy"], abs=1e-4)

    # sample --label: one class; without it, one row per class.
    model = str(trained / "model.keras")
    one = tmp_path / "one.png"
    assert (
        main(["sample", "--model", model, "--num-samples", "4", "--label", "3", "--output", str(one), "--scale", "1"])
        == 0
    )
    assert np.asarray(Image.open(one)).shape == (2 * 29 + 1, 2 * 29 + 1)
    rows = tmp_path / "rows.png"
    assert main(["sample", "--model", model, "--num-samples", "20", "--output", str(rows), "--scale", "1"]) == 0
    assert np.asarray(Image.open(rows)).shape == (10 * 29 + 1, 2 * 29 + 1)
    capsys.readouterr()
    assert main(["sample", "--model", model, "--label", "10", "--output", str(rows)]) == 2
    assert "--label must lie in [0, 10); received --label 10" in capsys.readouterr().err


# Resuming a conditional run is the resume of any run (tests/test_cli_resume.py) with the
# number of classes among the compared settings: slow.
@pytest.mark.slow
def test_resume_keeps_the_classes(tmp_path, capsys):
    trained = tmp_path / "conditional_run"
    assert main(["train", "--conditional", *TINY, "--steps", "2", "--output-dir", str(trained)]) == 0
    assert main(["train", "--conditional", *TINY, "--steps", "3", "--output-dir", str(trained)]) == 0
    assert json.loads((trained / "report.json").read_text())["steps"] == 3
    assert "resuming from" in capsys.readouterr().out
    # The same directory without --conditional is another run: refused.
    assert main(["train", *TINY, "--steps", "4", "--output-dir", str(trained)]) == 2
    assert "num_classes" in capsys.readouterr().err


@pytest.mark.backend_independent
def test_labels_from_class_subdirectories(tmp_path):
    from PIL import Image

    from tfp_realnvp.data import load_labelled_images

    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    images, labels, classes = load_labelled_images(tmp_path, split="all")
    assert images.shape == (6, 8, 8, 1) and classes == ["cats", "dogs"]
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="one subdirectory per class"):
        load_labelled_images(tmp_path, split="all")


@pytest.mark.backend_independent
def test_labels_from_npz(tmp_path):
    from tfp_realnvp.data import load_labelled_images

    rng = np.random.default_rng(1)
    path = tmp_path / "set.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (5, 4, 4, 1), dtype=np.uint8),
        y_train=np.arange(5) % 2,
        x_test=rng.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8),
        y_test=np.array([1, 0]),
    )
    images, labels, _ = load_labelled_images(path, split="test")
    assert images.shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(labels, [1, 0])
    np.savez(tmp_path / "plain.npz", images=rng.integers(0, 256, (5, 4, 4, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="holds no labels"):
        load_labelled_images(tmp_path / "plain.npz", split="train")


def test_conditional_refuses_a_stream(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--conditional",
                "--stream",
                "--data",
                str(tmp_path),
                *TINY,
                "--steps",
                "1",
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "--conditional reads labelled sets held in memory" in capsys.readouterr().err


# tfds labels reach the same loader as the other sources (tested fast); the CLI run is slow.
@pytest.mark.slow
@pytest.mark.tf_only
def test_labels_from_tfds_mock(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from tfp_realnvp.data import load_labelled_images

    with tfds.testing.mock_data(num_examples=12):
        images, labels, _ = load_labelled_images("mnist", split="train", max_images=10)
        raw = list(tfds.load("mnist", split="train").take(10).as_numpy_iterator())
    assert images.shape == (10, 28, 28, 1) and labels.shape == (10,) and labels.dtype == np.int32
    np.testing.assert_array_equal(images, np.stack([r["image"] for r in raw]))
    np.testing.assert_array_equal(labels, [r["label"] for r in raw])
