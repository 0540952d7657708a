"""ONNX export of a variationally dequantized model: ``log_prob.onnx`` serves the bound
``log p(x + u) - log q(u | x)`` of ``RealNVP.log_prob`` in ONNX Runtime."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tfp_realnvp
from helpers import randomize

# A variational model's conversion: with the slow tests (test_onnx converts the plain model).
pytestmark = [pytest.mark.tf_only, pytest.mark.slow]

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'tfp-realnvp[onnx]')")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install 'tfp-realnvp[onnx]')")


def _run(path, **feed) -> dict:
    session = ort.InferenceSession(str(path))
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def test_log_prob_and_encode_of_a_variational_model_agree_with_keras(tmp_path):
    from tfp_realnvp.export.onnx import export_onnx

    keras.utils.set_random_seed(4)
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1, dequantization="variational")
    randomize(model.flow.variables, seed=1, stddev=0.05)
    randomize(model.dequantizer.weights, seed=2, stddev=0.1)
    images = np.random.default_rng(3).integers(0, 256, (5, 8, 8, 1)).astype(np.uint8)
    out = export_onnx(model, tmp_path / "onnx")
    served = _run(out / "log_prob.onnx", images=images)
    np.testing.assert_allclose(served["log_prob"], model.log_prob(images), rtol=1e-4)
    np.testing.assert_allclose(served["bits_per_dim"], model.bits_per_dim(images), rtol=1e-4)
    # The bound, not log p(x + u) alone: q is far from uniform here.
    x, _ = model._dequantize(keras.ops.convert_to_tensor(images), training=False)
    plain = keras.ops.convert_to_numpy(model._log_prob_of(x, None, training=False))
    assert np.min(np.abs(served["log_prob"] - plain)) > 1e-2
    z = np.asarray(model.encode(images))
    np.testing.assert_allclose(_run(out / "encode.onnx", images=images)["z"], z, rtol=1e-4, atol=1e-4 * np.abs(z).max())
