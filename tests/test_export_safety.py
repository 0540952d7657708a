"""Exports survive failures and concurrency; served requests are bounded and checked."""

import json
import os
import pathlib
import sys

import numpy as np
import pytest

import tiny_runs

pytestmark = pytest.mark.tf_only

tf = pytest.importorskip("tensorflow")

from tfp_realnvp import export as export_lib  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)
from tfp_realnvp.cli import main  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)
from tfp_realnvp.export.signatures import DEFAULT_MAX_SAMPLES  # noqa: E402 (after importorskip, as above)
from tfp_realnvp.internal import atomic  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)
from tfp_realnvp.model.files import save_realnvp  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)
from tfp_realnvp.model.realnvp import RealNVP  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def model():
    m = RealNVP(SHAPE, num_scales=1, num_filters=4, num_blocks=1)
    rng = np.random.default_rng(0)
    for v in m.flow.trainable_variables:
        v.assign(rng.normal(0.0, 0.05, size=tuple(v.shape)).astype(np.float32))
    return m


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    return save_realnvp(model, tmp_path_factory.mktemp("model") / "model.keras")


def _export_argv(model_file, base, *extra):
    return [
        sys.executable,
        "-m",
        "tfp_realnvp",
        "export",
        "--model",
        str(model_file),
        "--output",
        str(base),
        "--no-describe",
        *extra,
    ]


# Concurrency --------------------------------------------------------------------------
@pytest.mark.slow  # four export processes
def test_concurrent_exports_never_overwrite_each_other(model_file, tmp_path):
    base = tmp_path / "models" / "realnvp"
    runs = {
        "auto-a": tiny_runs.start(_export_argv(model_file, base, "--version", "auto")),
        "auto-b": tiny_runs.start(_export_argv(model_file, base, "--version", "auto")),
        "seven-a": tiny_runs.start(_export_argv(model_file, base, "--version", "7")),
        "seven-b": tiny_runs.start(_export_argv(model_file, base, "--version", "7")),
    }
    results = {}
    for name, process in runs.items():
        stdout, stderr = process.communicate(timeout=240)
        results[name] = (process.returncode, stdout, stderr)
    # Both auto exports succeed, each into a version of its own.
    auto_dirs = []
    for name in ("auto-a", "auto-b"):
        code, stdout, stderr = results[name]
        assert code == 0, stderr[-3000:]
        auto_dirs.append(stdout.split(" to ")[1].split()[0])
    assert len(set(auto_dirs)) == 2 and not any(d.endswith("/7") for d in auto_dirs)
    # Of the two exports to version 7, one wins and the other fails with a clear error.
    codes = sorted(results[name][0] for name in ("seven-a", "seven-b"))
    assert codes == [0, 2], [results[n][2][-2000:] for n in ("seven-a", "seven-b")]
    loser = next(results[n][2] for n in ("seven-a", "seven-b") if results[n][0] == 2)
    assert str(base / "7") in loser and "--overwrite" in loser and "overwrite=True" not in loser
    versions = sorted(p.name for p in base.iterdir())
    assert len(versions) == 3 and "7" in versions, versions
    for version in versions:
        meta = export_lib.load_metadata(base / version)
        assert meta["image_shape"] == list(SHAPE)
        assert (base / version / "saved_model.pb").is_file()


# --overwrite ---------------------------------------------------------------------------
@pytest.mark.slow  # a second full export
def test_overwrite_that_fails_keeps_the_old_export(model, tmp_path, monkeypatch):
    target = export_lib.export_saved_model(model, tmp_path / "export", measured_bits_per_dim=1.0)
    old_meta = (target / "assets" / "realnvp.json").read_text()
    real_rename = os.rename

    def rename(source, destination):
        if ".partial-" in pathlib.Path(source).name:
            raise PermissionError(13, "Permission denied", str(destination))
        real_rename(source, destination)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="unchanged"):
        export_lib.export_saved_model(model, target, overwrite=True, measured_bits_per_dim=2.0)
    monkeypatch.undo()
    assert (target / "assets" / "realnvp.json").read_text() == old_meta
    assert export_lib.load_metadata(target)["bits_per_dim"] == 1.0
    assert tf.saved_model.load(str(target)).signatures["serving_default"] is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], "no staging or old copies left"
    # And when nothing fails, the new export replaces the old one.
    export_lib.export_saved_model(model, target, overwrite=True, measured_bits_per_dim=2.0)
    assert export_lib.load_metadata(target)["bits_per_dim"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    # Without max_samples, the export records the default bound.
    assert export_lib.load_metadata(target)["max_samples"] == DEFAULT_MAX_SAMPLES == 1024


@pytest.mark.slow  # a second full export
def test_cli_names_the_overwrite_flag(model_file, tmp_path, capsys):
    out = tmp_path / "export"
    assert (
        main(["export", "--model", str(model_file), "--output", str(out), "--no-describe", "--max-samples", "64"]) == 0
    )
    # (The export also shows that the command records --max-samples.)
    assert json.loads((out / "assets" / "realnvp.json").read_text())["max_samples"] == 64
    capsys.readouterr()
    assert main(["export", "--model", str(model_file), "--output", str(out), "--no-describe"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err
    assert main(["export", "--model", str(model_file), "--output", str(out), "--no-describe", "--overwrite"]) == 0


# The served signatures -----------------------------------------------------------------
@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    path = export_lib.export_saved_model(model, tmp_path_factory.mktemp("served") / "1", max_samples=5)
    return path, tf.saved_model.load(str(path))


def _sample(served, n):
    return served.signatures["sample"](
        num_samples=tf.constant(n), seed=tf.constant([1, 2]), temperature=tf.constant(1.0)
    )


@pytest.mark.slow  # a full export
def test_sample_is_bounded_by_the_value_fixed_at_export(served, model, tmp_path):
    path, loaded = served
    assert export_lib.load_metadata(path)["max_samples"] == 5
    assert _sample(loaded, 5)["images"].shape == (5, *SHAPE)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="num_samples must be at most 5, the bound fixed at export"
    ):
        _sample(loaded, 1_000_000)
    # (The default bound: test_overwrite_that_fails_keeps_the_old_export.)
    with pytest.raises(ValueError, match=r"max_samples must be an integer >= 1 and <= 2147483647; received 0\."):
        export_lib.export_saved_model(model, tmp_path / "bad", max_samples=0)


def test_every_signature_refuses_an_empty_batch_clearly(served):
    _, loaded = served
    empty = tf.zeros([0, *SHAPE], tf.uint8)
    for name in ("serving_default", "encode"):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=f"{name}: images must hold at least one item; received an empty batch"
        ):
            loaded.signatures[name](images=empty)
    with pytest.raises(tf.errors.InvalidArgumentError, match="decode: z must hold at least one item"):
        loaded.signatures["decode"](z=tf.zeros([0, *SHAPE], tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be a positive"):
        _sample(loaded, 0)


def test_export_cli_refuses_a_max_samples_of_zero(model_file, tmp_path, capsys):
    # A bound the command records: test_cli_names_the_overwrite_flag exports with --max-samples 64.
    argv = ["export", "--model", str(model_file), "--output", str(tmp_path / "f"), "--no-describe"]
    assert main([*argv, "--max-samples", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-samples must be an integer >= 1 and <= 2147483647; received 0." in err


def test_export_cli_checks_eval_images(model_file, tmp_path, capsys):
    argv = ["export", "--model", str(model_file), "--output", str(tmp_path / "e"), "--no-describe"]
    assert main([*argv, "--eval-data", str(tmp_path / "eval.npz"), "--eval-images", "0"]) == 2
    assert "--eval-images must be an integer >= 1; received 0." in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
