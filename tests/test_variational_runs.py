"""Variational dequantization through the command line, the conditional model and the export.

* ``train --dequantization variational`` writes a variational model; resuming its
  checkpoint with the other dequantization is refused, naming the setting;
  ``evaluate --samples K`` prints the K-sample bound of ``bits_per_dim(samples=K)``.
* A class-conditional variational model trains, evaluates with ``samples`` and reloads.
* The SavedModel of a variational model serves ``model.bits_per_dim`` (TensorFlow).
"""

import keras
import numpy as np
import pytest

import tiny_runs
from helpers import randomize
from tfp_realnvp.cli import main
from tfp_realnvp.data import load_images
from tfp_realnvp.model.files import load_realnvp
from tfp_realnvp.model.realnvp import RealNVP

# Training runs and an export: with the slow tests (test_variational checks the bound in
# the fast suite).
pytestmark = pytest.mark.slow


def test_train_writes_a_variational_model_resume_compares_the_setting_and_evaluate_prints_the_bound(tmp_path, capsys):
    data = tiny_runs.write_tiny_npz(tmp_path / "tiny.npz")
    argv = [
        "train",
        "--data",
        str(data),
        *tiny_runs.MODEL_FLAGS,
        "--output-dir",
        str(tmp_path / "out"),
        "--verbose",
        "0",
    ]
    assert main([*argv, "--steps", "2", "--dequantization", "variational"]) == 0
    model_path = tmp_path / "out" / "model.keras"
    model = load_realnvp(model_path)
    assert model.dequantization == "variational" and model.dequantizer is not None

    # Resuming its checkpoint with the other dequantization is refused, naming the setting.
    capsys.readouterr()
    assert main([*argv, "--steps", "4", "--dequantization", "uniform"]) == 2
    assert "dequantization: checkpoint 'variational', now 'uniform'" in capsys.readouterr().err

    # evaluate --samples K prints the K-sample bound of bits_per_dim(samples=K).
    assert main(["evaluate", "--model", str(model_path), "--data", str(data), "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "variational dequantization, 3 importance samples" in out
    expected = np.mean(load_realnvp(model_path).bits_per_dim(load_images(str(data), split="test"), samples=3))
    assert f"test bits/dim: {expected:.4f}" in out


def test_a_conditional_variational_model_trains_evaluates_and_reloads(tmp_path):
    keras.utils.set_random_seed(3)
    model = RealNVP(
        (4, 4, 1), num_classes=3, num_scales=1, num_filters=4, num_blocks=1, dequantization="variational", seed=2
    )
    model.compile(learning_rate=1e-2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 4, 4, 1)).astype(np.uint8)
    labels = rng.integers(0, 3, 12).astype(np.int32)
    history = model.fit(images, labels, batch_size=6, epochs=1, verbose=0)
    assert np.isfinite(history.history["bits_per_dim"][-1])
    one = model.bits_per_dim(images, labels)
    many = model.bits_per_dim(images, labels, samples=4, batch_size=8)
    assert one.shape == many.shape == (12,) and np.all(np.isfinite(many))
    # Every class's column of class_log_likelihoods is the same bound as log_prob with that label.
    by_class = model.class_log_likelihoods(images)
    for k in range(3):
        np.testing.assert_allclose(by_class[:, k], model.log_prob(images, np.full(12, k)), rtol=1e-6, atol=1e-4)
    model.save(tmp_path / "conditional.keras")
    loaded = keras.models.load_model(tmp_path / "conditional.keras")
    np.testing.assert_allclose(loaded.bits_per_dim(images, labels, samples=4, batch_size=8), many, rtol=1e-6)
    np.testing.assert_allclose(loaded.bits_per_dim(images, labels), one, rtol=1e-6)


@pytest.mark.tf_only
def test_the_saved_model_serves_the_variational_bound(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from tfp_realnvp.export.saved_model import export_saved_model

    keras.utils.set_random_seed(5)
    model = RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1, dequantization="variational")
    randomize(model.flow.variables, seed=1, stddev=0.05)
    randomize(model.dequantizer.weights, seed=2, stddev=0.1)
    images = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 1)).astype(np.uint8)
    path = export_saved_model(model, tmp_path / "served", version=1)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](images=tf.constant(images))
    expected = model.bits_per_dim(images)
    np.testing.assert_allclose(served["bits_per_dim"].numpy(), expected, rtol=1e-5)
    # The bound, not log p(x + u) alone: q is far from uniform here.
    x, _ = model._dequantize(keras.ops.convert_to_tensor(images), training=False)
    plain = model.to_bits_per_dim(keras.ops.convert_to_numpy(model._log_prob_of(x, None, training=False)))
    assert np.min(np.abs(plain - expected)) > 1e-3
