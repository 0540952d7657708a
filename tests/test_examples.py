"""The example scripts run end to end on tiny data with a few steps."""

import json
import os
import runpy
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.tf_only

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")
TINY = [
    "--num-filters",
    "4",
    "--num-blocks",
    "1",
    "--steps",
    "2",
    "--batch-size",
    "8",
    "--max-images",
    "16",
    "--verbose",
    "0",
    "--jit-compile",
    "false",
]


def _run(script, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(os.path.join(EXAMPLES, script), run_name="__main__")
    assert stop.value.code == 0


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_fashion_mnist_example(tmp_path, monkeypatch):
    _run("fashion_mnist.py", [*TINY, "--output-dir", str(tmp_path)], monkeypatch)
    assert _report(tmp_path)["image_shape"] == [28, 28, 1]


def test_cifar10_example_on_mock_tfds(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=16):
        _run("cifar10.py", [*TINY, "--output-dir", str(tmp_path)], monkeypatch)
    report = _report(tmp_path)
    assert report["image_shape"] == [32, 32, 3]
    assert report["config"]["num_scales"] == 2


# Five scales on 64x64 images: the longest example run, with the slow tests.
@pytest.mark.slow
def test_celeba_example_on_mock_tfds(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # The paper's 64x64 crops, through the full 5-scale architecture, with tiny nets.
    with tfds.testing.mock_data(num_examples=16):
        _run("celeba.py", [*TINY, "--output-dir", str(tmp_path)], monkeypatch)
    report = _report(tmp_path)
    assert report["image_shape"] == [64, 64, 3]
    assert report["config"]["num_scales"] == 5
    assert np.isfinite(report["test_bits_per_dim"])
