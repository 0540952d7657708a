"""Files and directories are written aside and renamed into place: a failure or a kill
at any moment leaves the old version whole, and nothing a user made is overwritten
unless asked."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tiny_runs
from tfp_realnvp.cli import main
from tfp_realnvp.internal import atomic


def _hidden(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.startswith("."))


# Files --------------------------------------------------------------------------------
def test_write_bytes_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic.write_bytes(target, b"old")
    atomic.write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_a_failing_writer_leaves_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"a good model")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_path(target) as temporary:
            assert temporary.parent == tmp_path and temporary.suffix == ".keras"
            temporary.write_bytes(b"half a mod")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"a good model"
    assert list(tmp_path.iterdir()) == [target]
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic.atomic_path(target):
            pass
    assert target.read_bytes() == b"a good model"


# The module is loaded from its file (argv[2]): it needs only the standard library, and
# importing the package would import Keras and TensorFlow, most of this test's cost.
_KILLED_WHILE_WRITING = textwrap.dedent(
    """
    import importlib.util, os, signal, sys

    spec = importlib.util.spec_from_file_location("atomic", sys.argv[2])
    atomic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic)

    with atomic.atomic_path(sys.argv[1]) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(b"x" * 1203)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_sigkill_while_writing_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"a finished model from an earlier run")
    script = tmp_path / "write.py"
    script.write_text(_KILLED_WHILE_WRITING)
    process = subprocess.run(
        [sys.executable, str(script), str(target), atomic.__file__],
        env=tiny_runs.env(),
        capture_output=True,
        timeout=120,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert target.read_bytes() == b"a finished model from an earlier run"


_KILLED_WHILE_SAVING_A_MODEL = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from tfp_realnvp.model.realnvp import RealNVP
    from tfp_realnvp.model.files import save_realnvp

    model = RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1)
    original_save = keras.Model.save

    def save_then_die(self, path, *args, **kwargs):
        original_save(self, path, *args, **kwargs)
        with open(path, "r+b") as handle:  # a kill in the middle of writing the zip
            handle.truncate(1203)
        os.kill(os.getpid(), signal.SIGKILL)

    keras.Model.save = save_then_die
    save_realnvp(model, sys.argv[1])
    """
)


def test_sigkill_during_the_final_save_keeps_the_earlier_model(tmp_path):
    from tfp_realnvp.model.files import load_realnvp, save_realnvp
    from tfp_realnvp.model.realnvp import RealNVP

    target = tmp_path / "model.keras"
    save_realnvp(RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1), target)
    before = target.read_bytes()
    script = tmp_path / "save.py"
    script.write_text(_KILLED_WHILE_SAVING_A_MODEL)
    process = subprocess.run(
        [sys.executable, str(script), str(target)], env=tiny_runs.env(), capture_output=True, text=True, timeout=180
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert target.read_bytes() == before
    assert load_realnvp(target).image_shape == (8, 8, 1)


def test_write_json_is_strict_json(tmp_path):
    path = tmp_path / "report.json"
    atomic.write_json(
        path,
        {
            "nan": float("nan"),
            "inf": np.float32(np.inf),
            "ok": np.float64(1.5),
            "n": np.int64(3),
            "list": [float("-inf"), 2.0],
            "array": np.array([1.0, np.nan]),
        },
    )

    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "array": [1.0, None],
        "inf": None,
        "list": [None, 2.0],
        "n": 3,
        "nan": None,
        "ok": 1.5,
    }


# Directories ----------------------------------------------------------------------------
def _tree(path, marker):
    path.mkdir(parents=True)
    (path / "assets").mkdir()
    (path / "assets" / "realnvp.json").write_text(marker)
    (path / "saved_model.pb").write_text(marker)
    return path


def test_install_directory_never_replaces_without_being_asked(tmp_path):
    target = _tree(tmp_path / "export", "old")
    staging = _tree(atomic.staging_directory(target), "new")
    with pytest.raises(FileExistsError, match="already exists"):
        atomic.install_directory(staging, target)
    assert (target / "assets" / "realnvp.json").read_text() == "old"
    assert (staging / "saved_model.pb").read_text() == "new"
    # An empty directory may be filled.
    empty = tmp_path / "empty"
    empty.mkdir()
    atomic.install_directory(staging, empty)
    assert (empty / "saved_model.pb").read_text() == "new"


def test_replacing_puts_the_new_directory_in_before_the_old_one_goes(tmp_path, monkeypatch):
    target = _tree(tmp_path / "export", "old")
    staging = _tree(atomic.staging_directory(target), "new")
    removed = []
    real_rmtree = atomic.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        # When the old directory is deleted, the new one is already in place.
        assert (target / "assets" / "realnvp.json").read_text() == "new"
        removed.append(pathlib.Path(path).name)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree)
    atomic.install_directory(staging, target, replace=True)
    assert (target / "saved_model.pb").read_text() == "new"
    assert len(removed) == 1 and ".export.replaced-" in removed[0]
    assert _hidden(tmp_path) == []


def test_a_failed_replacement_keeps_the_old_directory(tmp_path, monkeypatch):
    target = _tree(tmp_path / "export", "old")
    staging = _tree(atomic.staging_directory(target), "new")
    real_rename = os.rename

    def rename(source, destination):
        if pathlib.Path(source) == staging:
            raise PermissionError(13, "Permission denied", str(destination))
        real_rename(source, destination)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(PermissionError):
        atomic.install_directory(staging, target, replace=True)
    assert (target / "assets" / "realnvp.json").read_text() == "old"
    assert (target / "saved_model.pb").read_text() == "old"
    assert [p for p in _hidden(tmp_path) if "replaced" in p] == []


def test_an_old_directory_that_cannot_be_deleted_is_reported_not_fatal(tmp_path, monkeypatch):
    target = _tree(tmp_path / "export", "old")
    staging = _tree(atomic.staging_directory(target), "new")

    def rmtree(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree)
    with pytest.warns(RuntimeWarning, match="could not delete its old contents"):
        atomic.install_directory(staging, target, replace=True)
    assert (target / "saved_model.pb").read_text() == "new"


# The command line ---------------------------------------------------------------------
def test_train_does_not_overwrite_a_model_it_did_not_make(tmp_path, capsys):
    (tmp_path / "model.keras").write_bytes(b"somebody's model")
    (tmp_path / "report.json").write_text('{"status": "finished"}')
    data = tiny_runs.write_tiny_npz(tmp_path / "tiny.npz")
    argv = ["train", "--data", str(data), *tiny_runs.MODEL_FLAGS, "--steps", "2", "--output-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.keras" in err and "--fresh" in err and "--output-dir" in err
    assert (tmp_path / "model.keras").read_bytes() == b"somebody's model"
    assert (tmp_path / "report.json").read_text() == '{"status": "finished"}'


def test_sample_replaces_its_png_atomically(tmp_path, capsys):
    from tfp_realnvp.model.files import save_realnvp
    from tfp_realnvp.model.realnvp import RealNVP

    model_file = save_realnvp(RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1), tmp_path / "m.keras")
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"old")
    assert main(["sample", "--model", str(model_file), "--num-samples", "4", "--output", str(grid)]) == 0
    assert grid.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "m.keras"]
