"""The documented paths print no warnings: no tf.function retracing, no Python warning,
no iterator finalizer errors at exit.

The command-line runs use ``-W error`` (Python warnings raise, so a warning fails the
run) and their stderr is searched for warning lines; the Python calls run in this
process with warnings as errors and TensorFlow's log captured.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import tfp_realnvp

BACKEND = keras.backend.backend()

#: Python warnings raise; deprecations inside third-party imports (TFP's use of
#: distutils) are not the package's to fix.
PYTHON_WARNINGS = "error,ignore::DeprecationWarning"

#: The one line TensorFlow's C++ runtime writes before its logging is set up, whatever
#: ``TF_CPP_MIN_LOG_LEVEL`` says; it is not a warning about the run.
_RUNTIME_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

_NOISE = re.compile(r"WARNING|Warning:|retracing|Error occurred when finalizing")


def noise(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are warnings, retracing notes or finalizer errors."""
    return [line for line in stderr.splitlines() if _NOISE.search(line) and line.strip() != _RUNTIME_BANNER]


#: Runs several commands of ``python -m tfp_realnvp`` one after the other in one
#: process (one start-up instead of one each), each preceded on stderr by a marker line;
#: a command that fails ends the process with its status.
_COMMANDS = """
import json, sys
from tfp_realnvp.cli import main
for argv in json.loads(sys.argv[1]):
    print(MARKER + argv[0], file=sys.stderr, flush=True)
    status = main(argv)
    if status:
        raise SystemExit(status)
"""
MARKER = "--- command: "


def cli(*commands: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m tfp_realnvp`` commands, with Python warnings as errors, in one process
    on this backend; returns the finished process."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS=PYTHON_WARNINGS)
    script = f"MARKER = {MARKER!r}\n{_COMMANDS}"
    command = [sys.executable, "-c", script, json.dumps([list(argv) for argv in commands])]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def sections(stderr: str) -> dict[str, str]:
    """The stderr of each command, by its name; what a process writes as it exits
    belongs to its last command."""
    parts = stderr.split(MARKER)
    return {part.split("\n", 1)[0]: part for part in parts[1:]}


def assert_quiet(done: subprocess.CompletedProcess, command: str | None = None) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    stderr = done.stderr if command is None else sections(done.stderr)[command]
    assert noise(stderr) == [], stderr[-3000:]


JIT = ["--jit-compile", "false"] if BACKEND == "tensorflow" else []
TINY_FLAGS = ["--num-scales", "1", "--num-filters", "4", "--num-blocks", "1", "--batch-size", "8", *JIT]


@pytest.mark.starts_first  # the longest test of the fast suite: a demo, sample and train process
def test_demo_sample_and_a_streamed_run_are_quiet(tmp_path):
    """``demo --steps 3`` and ``sample`` of its model; on TensorFlow then ``train --stream``
    on shards written with ``write_npz_shards``' defaults: no warning, and no "Error
    occurred when finalizing GeneratorDataset iterator" at exit. One process runs them all."""
    out = tmp_path / "demo"
    argv = [
        ["demo", "--steps", "3", "--batch-size", "16", *JIT, "--verbose", "2", "--output-dir", str(out)],
        ["sample", "--model", str(out / "model.keras"), "--num-samples", "5", "--output", str(tmp_path / "grid.png")],
    ]
    if BACKEND == "tensorflow":  # streaming reads through tf.data
        from tfp_realnvp import data

        images = np.random.default_rng(0).integers(0, 256, (48, 8, 8, 1)).astype(np.uint8)
        data.write_npz_shards(images, tmp_path / "shards", images_per_shard=8)
        stream = ["train", "--data", str(tmp_path / "shards"), "--stream", "--steps", "4", "--steps-per-epoch", "2"]
        # Last: the iterator finalizer errors this checks for come as the process exits.
        argv.append([*stream, *TINY_FLAGS, "--verbose", "2", "--output-dir", str(tmp_path / "run")])
    done = cli(*argv)
    assert_quiet(done, "demo")
    assert_quiet(done, "sample")
    assert (out / "model.keras").exists() and (tmp_path / "grid.png").exists()
    if BACKEND == "tensorflow":
        assert_quiet(done, "train")
        assert (tmp_path / "run" / "model.keras").exists()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def strict():
    """Python warnings raise, and TensorFlow's warnings (retracing) are collected."""
    records = _Records()
    logger = logging.getLogger("tensorflow")
    logger.addHandler(records)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield records.messages
    logger.removeHandler(records)


TINY = {"num_scales": 1, "num_filters": 4, "num_blocks": 1}


def test_inference_on_many_batch_sizes_compiles_once_per_function(strict):
    model = tfp_realnvp.RealNVP((8, 8, 1), **TINY)
    rng = np.random.default_rng(0)
    for count in (1, 2, 3, 5, 8, 13):
        images = rng.integers(0, 256, (count, 8, 8, 1)).astype(np.uint8)
        z = model.encode(images, batch_size=4)
        np.testing.assert_array_equal(model.decode(z, batch_size=4), images)
        assert model.bits_per_dim(images, batch_size=4).shape == (count,)
        assert model.sample(count, seed=count).shape == (count, 8, 8, 1)
    traces = {key: f.traces for key, f in model._compiled.items() if key != "sample"}
    if model._compiled["encode"].shape_polymorphic:  # TensorFlow: one trace for every batch size
        assert traces == {"encode": 1, "decode": 1, "log_prob": 1}
    else:  # JAX: slices padded to 1, 2 or 4 rows
        assert sorted(traces) == ["decode", "encode", "log_prob"] and max(traces.values()) <= 3
    model.interpolate(images[0], images[1], steps=5)
    assert strict == []


def test_conditional_classify_and_bits_per_dim_are_quiet(strict):
    model = tfp_realnvp.RealNVP((8, 8, 1), num_classes=3, **TINY)
    rng = np.random.default_rng(1)
    for count in (1, 3, 7):
        images = rng.integers(0, 256, (count, 8, 8, 1)).astype(np.uint8)
        labels = rng.integers(0, 3, count)
        probabilities = model.classify(images, batch_size=2)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
        assert model.bits_per_dim(images, labels, batch_size=2).shape == (count,)
        assert model.sample(count, labels=labels, seed=0).shape == (count, 8, 8, 1)
    assert strict == []


@pytest.mark.tf_only
def test_fit_of_a_dataset_passes_no_shuffle_that_keras_would_ignore():
    import tensorflow as tf

    model = tfp_realnvp.RealNVP(image_shape=(8, 8, 1), num_scales=1, num_filters=4, num_blocks=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1)).astype("uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(tf.data.Dataset.from_tensor_slices(images).batch(16), epochs=1, verbose=0)
        model.fit(images, batch_size=16, epochs=1, verbose=0)
