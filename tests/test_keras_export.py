"""Keras 3's ``model.export`` of a ``RealNVP``: right after ``fit``, serving ``log p(x)``."""

from __future__ import annotations

import numpy as np
import pytest

import tfp_realnvp
from helpers import BACKEND


def _tiny_model(**kwargs) -> tfp_realnvp.RealNVP:
    model = tfp_realnvp.RealNVP(
        image_shape=(8, 8, 1), num_scales=1, num_filters=4, num_blocks=1, refresh_batches=1, **kwargs
    )
    model.compile()
    return model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)).astype("uint8")


def test_the_input_signature_is_the_models_inputs():
    (images,) = _tiny_model().export_input_signature()
    assert images.shape == (None, 8, 8, 1) and images.dtype == "uint8"
    ((images, labels),) = _tiny_model(num_classes=3).export_input_signature()
    assert images.shape == (None, 8, 8, 1) and labels.shape == (None,) and labels.dtype == "int32"


@pytest.mark.tf_only
def test_export_after_fit_serves_the_log_likelihood(images, tmp_path):
    import tensorflow as tf

    model = _tiny_model()
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    model.export(tmp_path / "served", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "served"))
    batch = images[:5]
    np.testing.assert_allclose(served.serve(tf.constant(batch)).numpy(), model.log_prob(batch), rtol=1e-5)
    outputs = served.signatures["serving_default"](images=tf.constant(batch))
    (served_log_prob,) = outputs.values()
    np.testing.assert_allclose(served_log_prob.numpy(), model.log_prob(batch), rtol=1e-5)
    # Inference mode: the same images give the same values, in any batch.
    np.testing.assert_allclose(served.serve(tf.constant(batch[:2])).numpy(), model.log_prob(batch[:2]), rtol=1e-5)


@pytest.mark.tf_only
@pytest.mark.slow  # a second export
def test_export_of_a_conditional_model_takes_images_and_labels(images, tmp_path):
    import tensorflow as tf

    # Not even called before: the model knows its inputs.
    model = _tiny_model(num_classes=3)
    labels = np.arange(len(images), dtype=np.int32) % 3
    model.export(tmp_path / "served", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "served"))
    value = served.serve((tf.constant(images[:4]), tf.constant(labels[:4])))
    np.testing.assert_allclose(value.numpy(), model.log_prob(images[:4], labels[:4]), rtol=1e-5)


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the refusal is for the JAX backend")
def test_export_on_jax_says_what_to_install_and_which_backend(tmp_path):
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"tfp-realnvp\[tensorflow\].*KERAS_BACKEND=tensorflow"):
        model.export(tmp_path / "served")
    assert not (tmp_path / "served").exists()


def test_the_export_command_on_another_backend_says_what_to_install(capsys):
    from tfp_realnvp.cli.export import add_unavailable_export_arguments
    from tfp_realnvp.cli.parser import FlagParser

    parser = add_unavailable_export_arguments(FlagParser(prog="export"), backend="jax")
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--model", "m.keras", "--output", "out"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "tfp-realnvp[tensorflow]" in error and "KERAS_BACKEND=tensorflow" in error and "'jax'" in error
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--help"])
    assert stopped.value.code == 0
    assert "KERAS_BACKEND=tensorflow" in capsys.readouterr().out


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the command refuses on other backends than TensorFlow")
def test_the_export_command_of_the_jax_command_line_refuses_when_parsed(tmp_path, capsys):
    from tfp_realnvp.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["export", "--model", str(tmp_path / "m.keras"), "--output", str(tmp_path / "out")])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "pip install 'tfp-realnvp[tensorflow]'" in error and "KERAS_BACKEND=tensorflow" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the refusal is for other backends than TensorFlow")
def test_onnx_export_on_jax_says_which_backend(tmp_path):
    from tfp_realnvp.export import export_onnx

    with pytest.raises(ValueError, match=r"KERAS_BACKEND=tensorflow"):
        export_onnx(_tiny_model(), tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
