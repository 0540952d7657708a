"""The example scripts: ``--help``, the commands of their docstrings, and end-to-end runs
on tiny data with a few steps."""

import argparse
import json
import os
import re
import runpy
import shlex
import sys

import keras
import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")
SCRIPTS = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".py"))
# Tiny conditioners: one residual block of four filters without batch norm inside (a
# third of a conditioner's graph ops to trace). The runs are about the examples' data
# and defaults, not their networks.
TINY = ["--num-filters", "4", "--num-blocks", "1", "--no-conditioner-batch-norm", "--steps", "2", "--batch-size", "8"]
TINY += ["--max-images", "16", "--verbose", "0"]
if keras.backend.backend() == "tensorflow":
    TINY += ["--jit-compile", "false"]  # faster to build on TensorFlow; JAX without jit would run eagerly


def _run(script, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(os.path.join(EXAMPLES, script), run_name="__main__")
    assert stop.value.code == 0


def _report(out):
    return json.loads((out / "report.json").read_text())


def _docstring_commands(script):
    """The ``python examples/<script> ...`` lines of a script's docstring, as argument lists."""
    namespace = runpy.run_path(os.path.join(EXAMPLES, script), run_name="example")
    lines = re.findall(r"^\s*python (examples/\S+\.py.*)$", namespace["__doc__"], flags=re.MULTILINE)
    return namespace["main"], [shlex.split(line) for line in lines]


@pytest.mark.backend_independent
def test_every_example_is_tested():
    assert SCRIPTS == ["celeba.py", "cifar10.py", "fashion_mnist.py"]


@pytest.mark.backend_independent
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_help(script, monkeypatch, capsys):
    _run(script, ["--help"], monkeypatch)
    text = capsys.readouterr().out
    assert text.startswith("usage:") and "--steps" in text and "--output-dir" in text


@pytest.mark.backend_independent
@pytest.mark.parametrize("script", SCRIPTS)
def test_docstring_commands_parse(script, monkeypatch):
    """Each command of a script's docstring names that script and its parser accepts it."""
    main, commands = _docstring_commands(script)
    assert commands, f"{script} shows no command"
    parsed = []

    def parse_args(self, args=None, namespace=None):
        parsed.append(original(self, args, namespace))
        raise SystemExit(0)

    original = argparse.ArgumentParser.parse_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    for words in commands:
        assert words[0] == f"examples/{script}"
        with pytest.raises(SystemExit):
            main(words[1:])
    assert len(parsed) == len(commands)


def test_fashion_mnist_example(tmp_path, monkeypatch):
    # One scale: a flag overrides the example's default. Its two scales on 28x28 images
    # train in test_honest_evaluation.
    _run("fashion_mnist.py", [*TINY, "--num-scales", "1", "--output-dir", str(tmp_path)], monkeypatch)
    report = _report(tmp_path)
    assert report["image_shape"] == [28, 28, 1]
    assert report["config"]["num_scales"] == 1 and report["config"]["num_filters"] == 4


# tfds (not in the JAX environment) and random flips (tf.image) need TensorFlow.
@pytest.mark.tf_only
@pytest.mark.starts_first
def test_cifar10_example_on_mock_tfds(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # One scale (the example's default is two) traces in less than half the time; the
    # data source, its 32x32x3 images and the flips are still the example's own.
    with tfds.testing.mock_data(num_examples=16):
        _run("cifar10.py", [*TINY, "--num-scales", "1", "--output-dir", str(tmp_path)], monkeypatch)
    report = _report(tmp_path)
    # No --data flag: "cifar10" is the example's default, as the shape is its images'.
    assert report["data"] == "cifar10"
    assert report["image_shape"] == [32, 32, 3]
    assert report["config"]["num_scales"] == 1 and report["config"]["num_filters"] == 4


# Five scales on 64x64 images: the longest example run, with the slow tests.
@pytest.mark.slow
@pytest.mark.tf_only
def test_celeba_example_on_mock_tfds(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # The paper's 64x64 crops, through the full 5-scale architecture, with tiny nets.
    with tfds.testing.mock_data(num_examples=16):
        _run("celeba.py", [*TINY, "--output-dir", str(tmp_path)], monkeypatch)
    report = _report(tmp_path)
    assert report["image_shape"] == [64, 64, 3]
    assert report["config"]["num_scales"] == 5
    assert np.isfinite(report["test_bits_per_dim"])


@pytest.mark.backend_independent
def test_run_preset_refuses_defaults_that_are_no_train_flag():
    from tfp_realnvp.cli.preset import run_preset

    with pytest.raises(ValueError, match=r"unknown keys \['num_layers'\]"):
        run_preset([], defaults={"num_scales": 2, "num_layers": 3}, description="x")
