"""ONNX export (``python -m tfp_realnvp export --format onnx``, ``tfp_realnvp.export.onnx``):
the files run in ONNX Runtime and agree with the Keras model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfp_realnvp
from tfp_realnvp.cli import main

pytestmark = pytest.mark.tf_only

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'tfp-realnvp[onnx]')")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install 'tfp-realnvp[onnx]')")

RTOL = 1e-4


def _tiny_model(**kwargs) -> tfp_realnvp.RealNVP:
    model = tfp_realnvp.RealNVP(
        image_shape=(8, 8, 1), num_scales=1, num_filters=4, num_blocks=1, refresh_batches=1, **kwargs
    )
    model.compile()
    return model


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1)).astype("uint8")


def _run(path, **feed) -> dict:
    session = ort.InferenceSession(str(path))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, feed)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = _tiny_model()
    model.fit(_images(16, 0), batch_size=8, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("onnx_model") / "model.keras"
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    _, path = trained
    out = tmp_path_factory.mktemp("onnx_export") / "onnx"
    assert main(["export", "--format", "onnx", "--model", str(path), "--output", str(out)]) == 0
    return out


def test_the_command_writes_the_files_and_their_manifest(exported, capsys):
    assert sorted(p.name for p in exported.iterdir()) == [
        "decode.onnx",
        "encode.onnx",
        "log_prob.onnx",
        "manifest.json",
    ]
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["image_shape"] == [8, 8, 1] and manifest["opset"] == 18
    assert manifest["files"]["log_prob.onnx"] == {
        "inputs": {"images": "uint8 [None, 8, 8, 1]"},
        "outputs": {"bits_per_dim": "float32 [None]", "log_prob": "float32 [None]"},
    }
    assert manifest["files"]["decode.onnx"]["inputs"] == {"z": "float32 [None, 8, 8, 1]"}


def test_log_prob_runs_in_onnx_runtime_and_agrees_with_keras(exported, trained):
    model, _ = trained
    images = _images(5, 1)
    out = _run(exported / "log_prob.onnx", images=images)
    np.testing.assert_allclose(out["log_prob"], model.log_prob(images), rtol=RTOL)
    np.testing.assert_allclose(out["bits_per_dim"], model.bits_per_dim(images), rtol=RTOL)
    # The dequantization noise depends only on each image: any batch gives the same values.
    np.testing.assert_allclose(_run(exported / "log_prob.onnx", images=images[3:])["log_prob"], out["log_prob"][3:])


def test_encode_and_decode_run_in_onnx_runtime_and_agree_with_keras(exported, trained):
    model, _ = trained
    images = _images(4, 2)
    z = np.asarray(model.encode(images))
    encoded = _run(exported / "encode.onnx", images=images)["z"]
    np.testing.assert_allclose(encoded, z, rtol=RTOL, atol=RTOL * np.abs(z).max())
    decoded = _run(exported / "decode.onnx", z=z)["images"]
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.asarray(model.decode(z)))
    np.testing.assert_array_equal(decoded, images)


def test_a_measurement_flag_is_refused_with_onnx(trained, tmp_path, capsys):
    _, path = trained
    code = main(
        ["export", "--format", "onnx", "--model", str(path), "--output", str(tmp_path / "o"), "--bits-per-dim", "3"]
    )
    assert code == 2
    assert "--bits-per-dim" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_missing_converter_is_refused_when_the_flags_are_parsed(monkeypatch, tmp_path, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else find_spec(name, *a)
    )
    with pytest.raises(SystemExit) as stopped:
        main(["export", "--format", "onnx", "--model", str(tmp_path / "m.keras"), "--output", str(tmp_path / "o")])
    assert stopped.value.code == 2
    assert "pip install 'tfp-realnvp[onnx]'" in capsys.readouterr().err


def test_keras_onnx_format_points_at_the_onnx_export(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match="export_onnx"):
        model.export(tmp_path / "m.onnx", format="onnx")


@pytest.mark.slow
def test_a_conditional_model_exports_with_labels_and_classify(tmp_path):
    from tfp_realnvp.export.onnx import export_onnx

    model = _tiny_model(num_classes=3)
    images, labels = _images(6, 3), np.arange(6, dtype=np.int32) % 3
    out = export_onnx(model, tmp_path / "onnx")
    log_prob = _run(out / "log_prob.onnx", images=images, labels=labels)["log_prob"]
    np.testing.assert_allclose(log_prob, model.log_prob(images, labels), rtol=RTOL)
    z = np.asarray(model.encode(images, labels))
    np.testing.assert_allclose(_run(out / "encode.onnx", images=images, labels=labels)["z"], z, rtol=RTOL, atol=1e-5)
    np.testing.assert_array_equal(_run(out / "decode.onnx", z=z, labels=labels)["images"], images)
    classified = _run(out / "classify.onnx", images=images)
    np.testing.assert_allclose(classified["probabilities"], model.classify(images), rtol=RTOL, atol=1e-6)
