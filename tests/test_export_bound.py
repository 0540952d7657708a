"""The SavedModel's ``log_prob_bound`` signature: the importance-weighted bound of
``RealNVP.log_prob(images, samples=K)``, the same seeded draws, served for any ``K``."""

import keras
import numpy as np
import pytest

from helpers import randomize
from tfp_realnvp.export.signatures import BOUND_CHUNK, MAX_BOUND_SAMPLES
from tfp_realnvp.model.realnvp import RealNVP

# Two full exports: with the slow tests.
pytestmark = [pytest.mark.tf_only, pytest.mark.slow]


def served_bound(model, tmp_path, images, samples, labels=None):
    tf = pytest.importorskip("tensorflow")
    from tfp_realnvp.export.saved_model import export_saved_model

    path = export_saved_model(model, tmp_path / "served", version=1)
    signature = tf.saved_model.load(str(path)).signatures["log_prob_bound"]
    extra = {} if labels is None else {"labels": tf.constant(labels, tf.int32)}
    return signature, {
        k: signature(images=tf.constant(images), samples=tf.constant(k, tf.int32), **extra) for k in samples
    }


def test_a_variational_model_serves_the_k_sample_bound(tmp_path):
    tf = pytest.importorskip("tensorflow")
    keras.utils.set_random_seed(5)
    model = RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1, dequantization="variational")
    randomize(model.flow.variables, seed=1, stddev=0.05)
    randomize(model.dequantizer.weights, seed=2, stddev=0.1)
    images = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 1)).astype(np.uint8)
    ks = (1, 3, BOUND_CHUNK + 1)
    signature, served = served_bound(model, tmp_path, images, ks)
    for k in ks:
        expected = model.log_prob(images, samples=k)
        np.testing.assert_allclose(served[k]["log_prob"].numpy(), expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(served[k]["bits_per_dim"].numpy(), model.bits_per_dim(images, samples=k), rtol=1e-5)
    # More draws give other values (the check above could not pass with one draw served for all K).
    assert np.min(np.abs(served[BOUND_CHUNK + 1]["log_prob"].numpy() - served[1]["log_prob"].numpy())) > 1e-2
    for bad in (0, MAX_BOUND_SAMPLES + 1):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"samples must be an int32 scalar in \[1, 4096\]"):
            signature(images=tf.constant(images), samples=tf.constant(bad, tf.int32))


def test_a_conditional_model_serves_the_bound_of_each_label(tmp_path):
    keras.utils.set_random_seed(6)
    model = RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1, num_classes=3)
    randomize(model.flow.variables, seed=3, stddev=0.05)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, 4, 4, 1)).astype(np.uint8)
    labels = rng.integers(0, 3, 4).astype(np.int32)
    _, served = served_bound(model, tmp_path, images, (1, 4), labels)
    np.testing.assert_allclose(served[1]["log_prob"].numpy(), model.log_prob(images, labels), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        served[4]["log_prob"].numpy(), model.log_prob(images, labels, samples=4), rtol=1e-5, atol=1e-4
    )
