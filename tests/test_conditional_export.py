"""SavedModel export of a class-conditional RealNVP: labels on every signature, the
classify signature, reloaded with tf.saved_model.load and compared with the model."""

import keras
import numpy as np
import pytest

from helpers import randomize

pytestmark = pytest.mark.tf_only

tf = pytest.importorskip("tensorflow")

import tfp_realnvp  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)
from tfp_realnvp import export as export_lib  # noqa: E402 (after importorskip: without TensorFlow the module is skipped, not an import error)
from tfp_realnvp.export.signatures import CONDITIONAL_SIGNATURE_NAMES  # noqa: E402 (after importorskip, as above)

IMAGE = (8, 8, 1)
K = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(2)
    model = tfp_realnvp.RealNVP(IMAGE, num_classes=K, num_scales=2, num_filters=4, num_blocks=1)
    randomize(model.flow.variables, seed=6, stddev=0.05)
    randomize(model.prior.weights, seed=7, stddev=0.2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, *IMAGE), dtype=np.uint8)
    labels = rng.integers(0, K, 5).astype(np.int32)
    path = export_lib.export_saved_model(
        model, tmp_path_factory.mktemp("export") / "1", images_for_bpd=images, labels_for_bpd=labels
    )
    return model, tf.saved_model.load(str(path)), path, images, labels


# Slow: runs every signature against the model's own functions; the module's export is
# served in the fast suite by test_classify_signature_is_bayes_rule.
@pytest.mark.slow
def test_signatures_take_labels_and_match_the_model(exported):
    model, served, path, images, labels = exported
    assert set(served.signatures) == set(CONDITIONAL_SIGNATURE_NAMES)
    out = served.signatures["serving_default"](images=tf.constant(images), labels=tf.constant(labels))
    np.testing.assert_allclose(out["log_prob"].numpy(), model.log_prob(images, labels), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out["bits_per_dim"].numpy(), model.bits_per_dim(images, labels), rtol=1e-5)
    z = served.signatures["encode"](images=tf.constant(images), labels=tf.constant(labels))["z"].numpy()
    np.testing.assert_allclose(z, model.encode(images, labels), rtol=1e-5, atol=1e-4)
    decoded = served.signatures["decode"](z=tf.constant(z), labels=tf.constant(labels))["images"].numpy()
    np.testing.assert_array_equal(decoded, images)
    sampled = served.signatures["sample"](
        num_samples=tf.constant(3),
        seed=tf.constant([4, 0]),
        temperature=tf.constant(0.7),
        labels=tf.constant([0, 1, 2]),
    )["images"].numpy()
    np.testing.assert_array_equal(sampled, model.sample(3, labels=[0, 1, 2], temperature=0.7, seed=4))
    metadata = tfp_realnvp.load_metadata(path)
    assert metadata["num_classes"] == K
    np.testing.assert_allclose(metadata["bits_per_dim"], np.mean(model.bits_per_dim(images, labels)), rtol=1e-5)
    assert metadata["signatures"]["classify"]["inputs"] == {"images": "uint8 [None, 8, 8, 1]"}


def test_classify_signature_is_bayes_rule(exported):
    model, served, _, images, _ = exported
    out = served.signatures["classify"](images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"].numpy(), model.classify(images), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["class_log_prob"].numpy(), model.class_log_likelihoods(images), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(out["labels"].numpy(), model.classify(images).argmax(axis=1))


def test_served_label_checks(exported):
    _, served, _, images, labels = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must lie in \[0, 3\)"):
        served.signatures["serving_default"](images=tf.constant(images), labels=tf.constant([0, 1, 2, 3, 0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per image"):
        served.signatures["serving_default"](images=tf.constant(images), labels=tf.constant([0, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per image"):
        served.signatures["sample"](
            num_samples=tf.constant(3), seed=tf.constant([4, 0]), temperature=tf.constant(0.7), labels=tf.constant([0])
        )


def test_labels_for_bpd_checks(exported, tmp_path):
    model, _, _, images, _ = exported
    with pytest.raises(ValueError, match="needs labels_for_bpd"):
        export_lib.export_saved_model(model, tmp_path / "a", images_for_bpd=images)
    with pytest.raises(ValueError, match="labels_for_bpd goes with images_for_bpd"):
        export_lib.export_saved_model(model, tmp_path / "b", labels_for_bpd=[0])
