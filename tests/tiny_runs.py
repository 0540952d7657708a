"""Tiny command-line runs for the tests of checkpoints, signals, divergence and files.

A run trains a one-scale flow with 4 filters and one residual block on 8x8x1 images
held in a ``.npz`` file, so that the start-up of a Python process dominates its cost.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
import time

import keras
import numpy as np

from tfp_realnvp.training.run_files import CHECKPOINT_DIRNAME

BACKEND = keras.backend.backend()

#: Flags of a tiny model. On TensorFlow the train step runs without XLA (faster to
#: build); on JAX without ``jit`` it would run eagerly, which is far slower.
MODEL_FLAGS = ["--num-scales", "1", "--num-filters", "4", "--num-blocks", "1", "--batch-size", "16"]
if BACKEND == "tensorflow":
    MODEL_FLAGS += ["--jit-compile", "false"]


@contextlib.contextmanager
def graphs_as_in_a_subprocess():
    """Within: TensorFlow's default graph optimisations, which the suite turns off
    (``conftest.py``) but a CLI subprocess keeps, so that a run trained here gives the
    weights of the same run in a subprocess bit for bit. JAX subprocesses inherit the
    suite's XLA setting through the environment, so nothing changes there."""
    if BACKEND != "tensorflow":
        yield
        return
    import tensorflow as tf

    previous = tf.config.optimizer.get_experimental_options().get("min_graph_nodes", 0)
    tf.config.optimizer.set_experimental_options({"min_graph_nodes": 0})  # 0: TensorFlow's default
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"min_graph_nodes": previous})


def write_tiny_npz(path: pathlib.Path, *, num_train: int = 64, num_test: int = 16, seed: int = 0) -> pathlib.Path:
    """Writes ``x_train``/``x_test`` uint8 images ``[N, 8, 8, 1]`` (a noisy common pattern)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 8, 8, 1))
    images = np.clip(base + rng.integers(-40, 40, (num_train + num_test, 8, 8, 1)), 0, 255).astype(np.uint8)
    np.savez(path, x_train=images[:num_train], x_test=images[num_train:])
    return path


def env() -> dict:
    """The environment of a CLI subprocess: this backend, quiet TensorFlow."""
    return dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")


def train_argv(data: pathlib.Path, out: pathlib.Path, *extra: str) -> list[str]:
    """``python -m tfp_realnvp train`` of the tiny model on ``data`` into ``out``."""
    return [
        sys.executable,
        "-m",
        "tfp_realnvp",
        "train",
        "--data",
        str(data),
        *MODEL_FLAGS,
        "--output-dir",
        str(out),
        *extra,
    ]


def run(argv: list[str], *, timeout: float = 240, cwd=None) -> subprocess.CompletedProcess:
    """Runs a command to its end and returns it (stdout and stderr as text)."""
    return subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=timeout, cwd=cwd, check=False)


def start(argv: list[str], *, cwd=None) -> subprocess.Popen:
    """Starts a command; its output goes to pipes."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=cwd)


def checkpoint_steps(out: pathlib.Path) -> list[int]:
    """Steps of the complete checkpoints in ``out/checkpoints``."""
    folder = out / CHECKPOINT_DIRNAME
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.iterdir() if p.name.startswith("step-"))


def wait_for_checkpoint(
    process: subprocess.Popen, out: pathlib.Path, *, after: int | None = None, timeout: float = 180
) -> int:
    """Waits until ``process`` has written a checkpoint (of a step after ``after``, when
    given); returns its step.

    Raises:
        AssertionError: when the process ends first or ``timeout`` passes.
    """
    wanted = "a checkpoint" if after is None else f"a checkpoint after step {after}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [s for s in checkpoint_steps(out) if after is None or s > after]
        if steps:
            return steps[-1]
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            raise AssertionError(f"the run ended (status {process.returncode}) before {wanted}:\n{stderr[-3000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no {wanted[2:]} in {out} after {timeout} s")


def trainable_weights(path: pathlib.Path) -> dict[str, np.ndarray]:
    """The trainable weights of a saved model, by variable path."""
    from tfp_realnvp.model.files import load_realnvp

    model = load_realnvp(path)
    return {v.path: np.asarray(keras.ops.convert_to_numpy(v)) for v in model.trainable_weights}
