"""tfds names where they cannot be read: without network (TensorFlow) and without
tensorflow-datasets (the JAX install). Either way ``train`` refuses in one line, within
seconds, and leaves no output folder behind."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time

import keras
import pytest

import tfp_realnvp
from tfp_realnvp import data

BACKEND = keras.backend.backend()
HAS_TFDS = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tensorflow_datasets")


def network_reachable() -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
    except OSError:
        return False
    return True


def cli(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m tfp_realnvp ...`` on this backend; the finished process and its wall time."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tfp_realnvp", *argv], capture_output=True, text=True, env=env, timeout=240
    )
    return done, time.monotonic() - start


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` from the package (not TensorFlow's start-up log)."""
    return [line for line in stderr.splitlines() if line and not line.startswith(("I0000", "WARNING: All log"))]


@pytest.mark.skipif(not HAS_TFDS, reason="needs tensorflow-datasets")
@pytest.mark.skipif(network_reachable(), reason="needs a machine without network")
def test_train_on_a_tfds_name_without_network_refuses_in_one_line(tmp_path):
    out = tmp_path / "runs" / "cifar"
    done, seconds = cli("train", "--data", "cifar10", "--data-dir", str(tmp_path / "tfds"), "--output-dir", str(out))
    assert done.returncode == 2, done.stderr[-3000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("error: no network: the tfds dataset 'cifar10' is not prepared in ")
    assert "--data-dir" in lines[0] and str(tmp_path / "tfds") in lines[0]
    assert seconds < 30, f"{seconds:.1f} s"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tfds").exists()


@pytest.mark.skipif(not HAS_TFDS, reason="needs tensorflow-datasets")
def test_no_network_is_found_before_any_download(tmp_path, monkeypatch):
    """The same refusal on any machine, with the network probe answering "unreachable"."""
    from tfp_realnvp.data import tfds

    monkeypatch.setattr(tfds, "_network_reachable", lambda timeout: False)
    with pytest.raises(ConnectionError, match=r"^no network: the tfds dataset 'mnist' is not prepared in .*data_dir"):
        data.get_dataset("mnist", split="train", data_dir=tmp_path / "tfds")
    out = tmp_path / "new" / "run"
    with pytest.raises(ConnectionError, match="'mnist'"):
        tfp_realnvp.train(data="mnist", data_dir=str(tmp_path / "tfds"), output_dir=str(out), steps=1)
    assert not (tmp_path / "new").exists()


def test_a_run_that_fails_before_writing_leaves_no_output_folder(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises((FileNotFoundError, ValueError)):
        tfp_realnvp.train(data=str(tmp_path / "missing.npz"), output_dir=str(out), steps=1)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises((FileNotFoundError, ValueError)):
        tfp_realnvp.train(data=str(tmp_path / "missing.npz"), output_dir=str(kept), steps=1)
    assert kept.is_dir()  # a folder the run did not create stays


@pytest.mark.skipif(bool(HAS_TFDS), reason="the install without TensorFlow (JAX)")
def test_a_tfds_name_without_tensorflow_names_what_to_install(tmp_path):
    with pytest.raises(ImportError, match=r"'cifar10' is read by tensorflow-datasets, which needs TensorFlow: pip"):
        data.get_dataset("cifar10", split="train")
    out = tmp_path / "run"
    done, _ = cli("train", "--data", "cifar10", "--steps", "1", "--output-dir", str(out))
    assert done.returncode == 2, done.stderr[-3000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "tensorflow-datasets, which needs TensorFlow: pip install tensorflow tensorflow-datasets" in lines[0]
    assert not out.exists()
    # evaluate refuses the same way, before reading the model.
    done, _ = cli("evaluate", "--model", str(tmp_path / "model.keras"), "--data", "cifar10")
    assert done.returncode == 2 and len(error_lines(done.stderr)) == 1, done.stderr[-3000:]
    assert "tensorflow-datasets, which needs TensorFlow" in done.stderr
