"""SavedModel export: signatures, reload without the package, metadata, versions, errors."""

import argparse
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from helpers import randomize

pytestmark = pytest.mark.tf_only

tf = pytest.importorskip("tensorflow")

import tfp_realnvp  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)
from tfp_realnvp import cli  # noqa: E402 (after importorskip, as above)
from tfp_realnvp import export as export_lib  # noqa: E402 (after importorskip, as above)
from tfp_realnvp.export import describe as export_description  # noqa: E402 (after importorskip, as above)
from tfp_realnvp.export import metadata as export_metadata  # noqa: E402 (after importorskip, as above)
from tfp_realnvp.export import signatures as export_signatures  # noqa: E402 (after importorskip, as above)
from tfp_realnvp.export import versions as export_versions  # noqa: E402 (after importorskip, as above)

IMAGE_SHAPE = (8, 8, 1)
EXPECTED_SHAPE_TEXT = r"\[\?,8,8,1\]"


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *IMAGE_SHAPE), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    """A tiny RealNVP with every weight moved off its initial value.

    Random batch-norm moving means and variances (what a few training steps would
    give, without the cost of tracing a train step) make inference mode differ from
    batch statistics, so an export that used the wrong mode would not match.
    """
    keras.utils.set_random_seed(1)
    m = tfp_realnvp.RealNVP(IMAGE_SHAPE, num_filters=8, num_blocks=1)
    randomize(m.flow.variables, seed=1, stddev=0.05)
    return m


@pytest.fixture(scope="module")
def bpd_images():
    return _images(48, seed=2)


@pytest.fixture(scope="module")
def exported(model, bpd_images, tmp_path_factory):
    """The export of ``model``, written over an old directory with ``overwrite=True``."""
    target = tmp_path_factory.mktemp("export") / "realnvp"
    target.mkdir()
    (target / "stale.txt").write_text("from an older export")
    return export_lib.export_saved_model(model, target, overwrite=True, images_for_bpd=bpd_images)


@pytest.fixture(scope="module")
def served(exported):
    return tf.saved_model.load(str(exported))


# Layout and metadata -----------------------------------------------------------------
def test_export_writes_a_savedmodel_and_returns_its_directory(exported, model, blocked_load):
    assert isinstance(exported, pathlib.Path)
    assert (exported / "saved_model.pb").is_file()
    assert (exported / "variables").is_dir()
    assert (exported / "assets" / export_metadata.METADATA_FILENAME).is_file()
    assert not (exported / "stale.txt").exists(), "overwrite=True must replace the old directory"
    assert not [p for p in exported.parent.iterdir() if "partial" in p.name], "staging directory left behind"


def test_served_object_holds_the_flow_variables(served, model):
    # Inference reads every weight and moving average; the update counters of the moving
    # averages only matter while training, and the signatures never read them.
    read = [v for v in model.flow.variables if v.name != "num_updates"]
    assert len(read) < len(model.flow.variables)
    saved = {tuple(v.shape) for v in served.model_variables}
    assert len(served.model_variables) == len(read)
    assert saved == {tuple(v.shape) for v in read}
    assert set(served.signatures) == set(export_signatures.SIGNATURE_NAMES)


def test_metadata_json(exported, served, model, bpd_images):
    meta = export_lib.load_metadata(exported)
    assert meta == json.loads((exported / "assets" / "realnvp.json").read_text())
    assert meta["image_shape"] == list(IMAGE_SHAPE)
    assert meta["flow_config"] == json.loads(json.dumps(model.flow.config))
    assert meta["tfp_realnvp_version"] == tfp_realnvp.__version__
    assert meta["tensorflow_version"] == tf.__version__
    assert meta["dtype_policy"] == "float32"
    exported_at = datetime.datetime.fromisoformat(meta["exported_at"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - exported_at) < datetime.timedelta(hours=1)
    expected_bpd = float(np.mean(model.bits_per_dim(bpd_images)))
    assert meta["bits_per_dim"] == pytest.approx(expected_bpd, rel=1e-5)
    assert meta["bits_per_dim_source"] == "images_for_bpd"
    assert meta["bits_per_dim_num_images"] == len(bpd_images)
    assert meta["signatures"]["serving_default"] == {
        "inputs": {"images": "uint8 [None, 8, 8, 1]"},
        "outputs": {"log_prob": "float32 [None]", "bits_per_dim": "float32 [None]"},
    }
    assert meta["signatures"]["sample"] == {
        "inputs": {"num_samples": "int32 []", "seed": "int32 [2]", "temperature": "float32 []"},
        "outputs": {"images": "uint8 [None, 8, 8, 1]"},
    }
    assert meta["signatures"]["encode"]["outputs"] == {"z": "float32 [None, 8, 8, 1]"}
    assert meta["signatures"]["decode"]["inputs"] == {"z": "float32 [None, 8, 8, 1]"}
    # The asset is tracked by the SavedModel, so the loaded object knows where it is.
    asset = pathlib.Path(served.metadata.asset_path.numpy().decode())
    assert asset.resolve() == (exported / "assets" / "realnvp.json").resolve()


# Signatures --------------------------------------------------------------------------
def test_serving_default_matches_in_process_log_prob(served, model):
    images = _images(10, seed=3)
    out = served.signatures["serving_default"](images=tf.constant(images))
    assert set(out) == {"log_prob", "bits_per_dim"}
    assert out["log_prob"].dtype == tf.float32 and out["log_prob"].shape == (10,)
    assert out["bits_per_dim"].dtype == tf.float32 and out["bits_per_dim"].shape == (10,)
    expected = model.log_prob(images)
    np.testing.assert_allclose(out["log_prob"].numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(out["bits_per_dim"].numpy(), model.to_bits_per_dim(expected), rtol=1e-4)


def test_sample_is_deterministic_per_seed(served, model):
    sample = served.signatures["sample"]

    def draw(seed, temperature=0.8, n=3):
        out = sample(num_samples=tf.constant(n), seed=tf.constant(seed, tf.int32), temperature=tf.constant(temperature))
        return out["images"].numpy()

    first, again, other = draw([5, 0]), draw([5, 0]), draw([6, 0])
    assert first.dtype == np.uint8 and first.shape == (3, *IMAGE_SHAPE)
    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)
    assert draw([5, 0], n=1).shape == (1, *IMAGE_SHAPE)
    # The served seed [s, 0] is the seed RealNVP.sample uses for the integer s.
    np.testing.assert_array_equal(first, model.sample(3, temperature=0.8, seed=5))


def test_encode_decode_match_the_model(served, model):
    images = _images(6, seed=4)
    z = served.signatures["encode"](images=tf.constant(images))["z"]
    assert z.dtype == tf.float32 and tuple(z.shape) == (6, *IMAGE_SHAPE)
    np.testing.assert_allclose(z.numpy(), model.encode(images), rtol=1e-4, atol=1e-4)
    decoded = served.signatures["decode"](z=z)["images"].numpy()
    assert decoded.dtype == np.uint8 and decoded.shape == images.shape
    expected = model.decode(z.numpy())
    assert np.max(np.abs(decoded.astype(int) - expected.astype(int))) <= 1
    assert np.mean(decoded == expected) > 0.99
    # encode dequantizes x + u with u in [0, 1); decode floors: the round trip is x.
    assert np.max(np.abs(decoded.astype(int) - images.astype(int))) <= 1
    assert np.mean(decoded == images) > 0.99
    # The signatures and the model's compiled encode and decode call one trace of each
    # pass of the flow (internal.compiled.SharedTrace), not one each.
    assert (model._inverse_pass.traces, model._forward_pass.traces) == (1, 1)


# Loading without the package ---------------------------------------------------------
_BLOCKED_LOAD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = ("tfp_realnvp", "tensorflow_probability")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"import of {name} is blocked")
            return None

    sys.meta_path.insert(0, Block())
    try:
        import tfp_realnvp
    except ImportError:
        pass
    else:
        raise SystemExit("tfp_realnvp was importable")

    import numpy as np
    import tensorflow as tf

    served = tf.saved_model.load(sys.argv[1])
    images = np.load(sys.argv[2])
    out = served.signatures["serving_default"](images=tf.constant(images))

    def draw(seed):
        return served.signatures["sample"](
            num_samples=tf.constant(2), seed=tf.constant(seed, tf.int32), temperature=tf.constant(1.0)
        )["images"].numpy()

    print(json.dumps({
        "log_prob": out["log_prob"].numpy().tolist(),
        "bits_per_dim": out["bits_per_dim"].numpy().tolist(),
        "same_seed_equal": bool(np.array_equal(draw([3, 4]), draw([3, 4]))),
        "other_seed_differs": bool(np.any(draw([3, 4]) != draw([4, 4]))),
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }))
    """
)


@pytest.fixture(scope="module")
def blocked_load(exported, tmp_path_factory):
    """Starts loading the export in a process where ``tfp_realnvp`` cannot be imported.

    The process starts as soon as the export exists (the first test asks for it), so
    its TensorFlow start-up overlaps the in-process tests.

    Returns:
        ``(process, images)``: the running ``subprocess.Popen`` and the images it scores.
    """
    workdir = tmp_path_factory.mktemp("blocked")
    images = _images(5, seed=5)
    np.save(workdir / "images.npy", images)
    (workdir / "load.py").write_text(_BLOCKED_LOAD)
    process = subprocess.Popen(
        [sys.executable, str(workdir / "load.py"), str(exported), str(workdir / "images.npy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=workdir,
    )
    yield process, images
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_export_loads_where_the_package_cannot_be_imported(blocked_load, model):
    process, images = blocked_load
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    np.testing.assert_allclose(report["log_prob"], model.log_prob(images), rtol=1e-4)
    np.testing.assert_allclose(report["bits_per_dim"], model.bits_per_dim(images), rtol=1e-4)
    assert report["same_seed_equal"] and report["other_seed_differs"]


# Listing -----------------------------------------------------------------------------
@pytest.mark.slow  # a saved_model_cli process
def test_saved_model_cli_lists_the_signatures(exported):
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    if not cli.is_file():
        pytest.skip(f"saved_model_cli is not installed next to {sys.executable}")
    assert export_description._saved_model_cli() == str(cli)
    listing = export_description.describe_export(exported)
    assert "Concrete Functions" in listing, "expected the saved_model_cli output"
    for name in export_signatures.SIGNATURE_NAMES:
        assert f"signature_def['{name}']" in listing
    for expected in (
        "inputs['images']",
        "inputs['num_samples']",
        "inputs['seed']",
        "inputs['temperature']",
        "inputs['z']",
        "outputs['log_prob']",
        "outputs['bits_per_dim']",
        "outputs['z']",
        "outputs['images']",
        "DT_UINT8",
        "shape: (-1, 8, 8, 1)",
    ):
        assert expected in listing
    # Without the tool, the same SignatureDef listing is read from saved_model.pb.
    fallback = export_description.describe_export(exported, use_cli=False)
    assert fallback.count("signature_def[") >= len(export_signatures.SIGNATURE_NAMES)
    assert listing.startswith(fallback), "the fallback differs from the saved_model_cli SignatureDefs"


def test_describe_export_names_a_missing_savedmodel(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        export_description.describe_export(tmp_path)


# Bad input to the served signatures --------------------------------------------------
def test_wrong_image_shape_names_the_expected_shape(served):
    for name in ("serving_default", "encode"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=EXPECTED_SHAPE_TEXT):
            served.signatures[name](images=tf.zeros([1, 9, 8, 1], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=EXPECTED_SHAPE_TEXT):
        served.signatures["serving_default"](images=tf.zeros(IMAGE_SHAPE, tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=EXPECTED_SHAPE_TEXT):
        served.signatures["decode"](z=tf.zeros([2, 8, 8, 2]))


def test_wrong_dtype_names_the_expected_dtype(served):
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor but is a float tensor"):
        served.signatures["serving_default"](images=tf.zeros([1, *IMAGE_SHAPE], tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        served.signatures["decode"](z=tf.zeros([1, *IMAGE_SHAPE], tf.float64))


def test_bad_sample_and_decode_values_are_named(served):
    sample = served.signatures["sample"]
    seed = tf.constant([1, 2], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be a positive"):
        sample(num_samples=tf.constant(0), seed=seed, temperature=tf.constant(1.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature must be a positive"):
        sample(num_samples=tf.constant(2), seed=seed, temperature=tf.constant(-1.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[2\]"):
        sample(num_samples=tf.constant(2), seed=tf.constant([1, 2, 3], tf.int32), temperature=tf.constant(1.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="z must be finite"):
        served.signatures["decode"](z=tf.fill([1, *IMAGE_SHAPE], np.float32(np.nan)))


# Directories and versions ------------------------------------------------------------
def test_refuses_to_overwrite_an_existing_export(model, exported):
    with pytest.raises(export_lib.ExportExistsError, match=str(exported)) as info:
        export_lib.export_saved_model(model, exported)
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, ValueError)
    assert "overwrite=True" in str(info.value)


def test_versioned_directories(model, tmp_path):
    base = tmp_path / "models" / "realnvp"
    (base / "2").mkdir(parents=True)
    (base / "7").mkdir()
    (base / "7" / "marker").write_text("old")
    (base / "notes").mkdir()  # not a version
    (base / "30.bak").mkdir()  # not a version

    written = export_lib.export_saved_model(model, base, version="auto", measured_bits_per_dim=3.25)
    assert written == base / "8"
    assert (written / "saved_model.pb").is_file()
    assert export_lib.load_metadata(written)["bits_per_dim"] == 3.25
    assert export_lib.load_metadata(written)["bits_per_dim_source"] == "measured_bits_per_dim"
    with pytest.raises(FileExistsError, match=str(base / "7")):
        export_lib.export_saved_model(model, base, version=7)
    assert (base / "7" / "marker").read_text() == "old"
    assert sorted(p.name for p in base.iterdir()) == ["2", "30.bak", "7", "8", "notes"]
    # Explicit versions; the first version of a new base directory is 1.
    assert export_versions.resolve_target(base, 12) == base / "12"
    assert export_versions.resolve_target(base, "12") == base / "12"
    assert export_versions.resolve_target(tmp_path / "fresh", "auto") == tmp_path / "fresh" / "1"
    # An existing empty directory may be written into; a file may not be replaced.
    (tmp_path / "empty").mkdir()
    export_versions.check_writable(tmp_path / "empty", overwrite=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="not a directory"):
        export_versions.check_writable(tmp_path / "file", overwrite=True)


@pytest.mark.parametrize("version", [-1, "latest", True, 1.5, "-1", None])
def test_bad_version_is_named(model, tmp_path, version):
    message = rf"version must be 'auto' or an integer >= 0 \(a TF Serving model version\); received {re.escape(repr(version))}\."
    with pytest.raises(ValueError, match=message):
        export_versions.parse_version(version)
    if version is not None:
        with pytest.raises(ValueError, match=message):
            export_lib.export_saved_model(model, tmp_path, version=version)


def test_version_parsing():
    assert export_versions.parse_version("auto") == "auto"
    assert export_versions.parse_version("12") == 12
    assert export_versions.parse_version(np.int64(3)) == 3
    assert export_versions.parse_version(0) == 0


def test_bad_bits_per_dim_arguments(model, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        export_lib.export_saved_model(model, tmp_path, measured_bits_per_dim=3.0, images_for_bpd=_images(2, 0))
    for bad in (float("nan"), "3.0", True):
        with pytest.raises(
            ValueError, match=rf"measured_bits_per_dim must be a finite number; received {re.escape(repr(bad))}\."
        ):
            export_lib.export_saved_model(model, tmp_path, measured_bits_per_dim=bad)
    with pytest.raises(ValueError, match="integer pixel values"):
        export_lib.export_saved_model(model, tmp_path, images_for_bpd=np.zeros((2, *IMAGE_SHAPE), np.float32))
    with pytest.raises(ValueError, match=r"\[N, 8, 8, 1\]"):
        export_lib.export_saved_model(model, tmp_path, images_for_bpd=np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(TypeError, match="RealNVP"):
        export_lib.export_saved_model(keras.Sequential(), tmp_path)
    assert not any(tmp_path.iterdir()), "a refused export must not write anything"


# Command line ------------------------------------------------------------------------
def test_export_arguments_have_help():
    parser = cli.add_export_arguments(argparse.ArgumentParser())
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in flags} >= {"model", "output", "version", "overwrite", "bits_per_dim", "eval_data"}
    assert all(a.help for a in flags)
    args = parser.parse_args(["--model", "m.keras", "--output", "out", "--version", "auto"])
    assert args.version == "auto" and not args.overwrite
    assert parser.parse_args(["--model", "m", "--output", "o", "--version", "3"]).version == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--output", "o", "--version", "newest"])


@pytest.mark.slow  # a mixed-precision export
def test_run_export_of_a_mixed_precision_keras_file(tmp_path, capsys):
    small = tfp_realnvp.RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1, dtype="mixed_bfloat16")
    randomize(small.flow.variables, seed=3, stddev=0.05)
    small.save(tmp_path / "small.keras")
    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 4, 1), dtype=np.uint8)
    np.savez(tmp_path / "eval.npz", x_test=images)
    parser = cli.add_export_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        [
            "--model",
            str(tmp_path / "small.keras"),
            "--output",
            str(tmp_path / "export"),
            "--version",
            "auto",
            "--eval-data",
            str(tmp_path / "eval.npz"),
            "--no-describe",
        ]
    )
    written = cli.run_export(args)
    assert written == tmp_path / "export" / "1"
    assert str(written) in capsys.readouterr().out
    # Served outputs are float32 whatever the training precision.
    listing = export_description.describe_export(written, use_cli=False)
    for output in ("log_prob", "bits_per_dim", "z"):
        assert re.search(rf"outputs\['{output}'\] tensor_info:\n\s+dtype: DT_FLOAT\n", listing), output
    meta = export_lib.load_metadata(written)
    assert meta["dtype_policy"] == "mixed_bfloat16"
    assert meta["flow_config"] == json.loads(json.dumps(small.flow.config))
    assert meta["bits_per_dim_num_images"] == len(images)
    assert 0 < meta["bits_per_dim"] < 16
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        cli.run_export(parser.parse_args(["--model", str(tmp_path / "missing.keras"), "--output", "x"]))
