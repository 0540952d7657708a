"""RealNVP(num_classes=K): fit on (images, labels), log p(x | y), classify by Bayes'
rule, sampling per class, encode/decode with labels, save/load, argument errors."""

import math
import re

import keras
import numpy as np
import pytest

from helpers import (
    BACKEND,
    randomize,
)
from tfp_realnvp import ConditionalNormal, RealNVP
from tfp_realnvp.internal.compiled import CompiledFunction
from tfp_realnvp.model.labels import check_prior, posterior

IMAGE = (8, 8, 1)
K = 3
TINY = {"num_scales": 2, "num_filters": 4, "num_blocks": 1}
# Training steps trace the whole flow: one scale keeps them short.
FIT = {"num_scales": 1, "num_filters": 4, "num_blocks": 1}


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *IMAGE), dtype=np.uint8), rng.integers(0, K, n).astype(np.int32)


@pytest.fixture(scope="module")
def model():
    """A conditional model with every weight (flow, label embeddings, class base) random.

    One scale: what these tests check (labels, Bayes' rule, sampling and coding per
    class) does not depend on the number of scales, and every compiled function of the
    model traces half as many operations as with two.
    """
    keras.utils.set_random_seed(3)
    m = RealNVP(IMAGE, num_classes=K, **FIT)
    randomize(m.flow.variables, seed=4, stddev=0.05)
    randomize(m.prior.weights, seed=5, stddev=0.2)
    return m


def test_log_prob_is_conditional_and_matches_call(model):
    images, labels = data(6)
    per_label = np.stack([model.log_prob(images, k) for k in range(K)], axis=1)
    assert per_label.shape == (6, K) and np.all(np.isfinite(per_label))
    assert np.min(np.ptp(per_label, axis=1)) > 1e-3  # the label matters
    np.testing.assert_allclose(model.log_prob(images, labels), per_label[np.arange(6), labels], rtol=1e-5, atol=1e-3)

    # Called eagerly on TensorFlow, compiled on JAX (whose eager calls run op by op, slowly).
    def call(inputs):
        return model(inputs, training=False)

    called = keras.ops.convert_to_numpy(
        call((images, labels)) if BACKEND == "tensorflow" else CompiledFunction(model, call)((images, labels))
    )
    np.testing.assert_allclose(called, per_label[np.arange(6), labels], rtol=1e-5, atol=1e-3)
    bits = model.bits_per_dim(images, labels)
    np.testing.assert_allclose(bits, -model.log_prob(images, labels) / (np.prod(IMAGE) * math.log(2)), rtol=1e-6)
    # The same numbers whatever the batch size.
    np.testing.assert_allclose(
        model.log_prob(images, labels, batch_size=4), model.log_prob(images, labels), rtol=1e-5, atol=1e-3
    )


def test_classify_is_bayes_rule(model):
    images, _ = data(5, seed=1)
    log_lik = model.class_log_likelihoods(images, batch_size=2)
    np.testing.assert_allclose(log_lik[:, 1], model.log_prob(images, 1), rtol=1e-5, atol=1e-3)
    probs = model.classify(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    uniform = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, uniform / uniform.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    prior = np.array([0.7, 0.2, 0.1])
    weighted = np.exp(log_lik - log_lik.max(axis=1, keepdims=True)) * prior
    np.testing.assert_allclose(
        model.classify(images, prior=prior), weighted / weighted.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6
    )
    # Unnormalised weights mean the same prior.
    np.testing.assert_allclose(
        model.classify(images, prior=prior * 10), model.classify(images, prior=prior), atol=1e-12
    )


def test_posterior_is_stable_for_large_log_likelihoods():
    log_lik = np.array([[-5000.0, -5001.0, -6000.0]])
    p = posterior(log_lik, check_prior(None, num_classes=3))
    np.testing.assert_allclose(p[0], [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 0.0], atol=1e-12)


def test_sample_per_class(model):
    a = model.sample(4, labels=[0, 1, 2, 0], temperature=0.7, seed=3)
    assert a.shape == (4, *IMAGE) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, model.sample(4, labels=[0, 1, 2, 0], temperature=0.7, seed=3))
    one_label = model.sample(4, labels=2, temperature=0.7, seed=3)
    np.testing.assert_array_equal(one_label[2], a[2])
    assert not np.array_equal(one_label[0], a[0])  # another class, the same noise


def test_encode_decode_round_trip_with_labels(model):
    images, labels = data(4, seed=2)
    z = model.encode(images, labels)
    np.testing.assert_array_equal(model.decode(z, labels), images)
    assert np.max(np.abs(model.encode(images, (labels + 1) % K) - z)) > 1e-6  # the label reaches the flow
    path = model.interpolate(images[0], images[1], steps=3, label=int(labels[0]))
    assert path.shape == (3, *IMAGE)


def test_errors_name_what_was_received(model):
    images, labels = data(4)
    with pytest.raises(ValueError, match=r"needs labels.*received labels=None"):
        model.log_prob(images)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*received values in \[0, 3\]"):
        model.log_prob(images, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"one label per image \(4\); received 3 labels"):
        model.bits_per_dim(images, [0, 1, 2])
    with pytest.raises(ValueError, match="integer class labels; received dtype float"):
        model.log_prob(images, [0.5, 1, 2, 0])
    with pytest.raises(ValueError, match="needs labels"):
        model.sample(2)
    with pytest.raises(ValueError, match=r"prior must be 3 .*received \[0.5, 0.5\]"):
        model.classify(images, prior=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"needs \(images, labels\)"):
        model(images)
    with pytest.raises(ValueError, match=r"needs labels: pass fit\(images, labels\)"):
        model.fit(images, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.fit(images, labels + 5, epochs=1, verbose=0)


def test_unconditional_model_refuses_labels():
    m = RealNVP(IMAGE, **TINY)
    images, labels = data(2)
    with pytest.raises(
        ValueError, match=r"unconditional \(num_classes=None\) and takes no labels; received labels of shape \[2\]"
    ):
        m.log_prob(images, labels)
    with pytest.raises(ValueError, match="takes no labels"):
        m.sample(2, labels=0)
    with pytest.raises(ValueError, match="classify needs a class-conditional model"):
        m.classify(images)
    with pytest.raises(ValueError, match="takes images only"):
        m((images, labels))
    assert m.prior is None and not m.conditional and m.get_config()["num_classes"] is None


@pytest.mark.parametrize("bad", [1, 0, 2.5, True, "3"])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match=re.escape(f"num_classes must be an integer >= 2; received {bad!r}.")):
        RealNVP(IMAGE, num_classes=bad, **TINY)


@pytest.mark.parametrize("bad", [0, 1.5, True])
def test_conditional_normal_bad_num_classes(bad):
    with pytest.raises(ValueError, match=re.escape(f"num_classes must be an integer >= 1; received {bad!r}.")):
        ConditionalNormal(bad, IMAGE)


@pytest.mark.slow  # a training run and a reload
def test_fit_on_arrays_then_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    m = RealNVP(IMAGE, num_classes=K, refresh_batches=1, **FIT)
    m.compile(learning_rate=1e-2)
    images, labels = data(32)
    before = [np.array(keras.ops.convert_to_numpy(w)) for w in m.prior.weights]
    history = m.fit(images, labels, batch_size=16, epochs=1, verbose=0, validation_data=(images[:8], labels[:8]))
    assert np.isfinite(history.history["bits_per_dim"][-1]) and np.isfinite(history.history["val_bits_per_dim"][-1])
    assert all(not np.array_equal(a, keras.ops.convert_to_numpy(w)) for a, w in zip(before, m.prior.weights))
    embedding = m.flow.couplings[0].context_layer
    assert any(np.any(keras.ops.convert_to_numpy(w) != 0) for w in embedding.trainable_weights)
    assert np.all(np.isfinite(m.evaluate(images, labels, batch_size=16, verbose=0)))
    path = tmp_path / "conditional.keras"
    m.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.num_classes == K and loaded.get_config() == m.get_config()
    np.testing.assert_allclose(loaded.log_prob(images[:4], labels[:4]), m.log_prob(images[:4], labels[:4]), rtol=1e-6)


@pytest.mark.slow
def test_standard_normal_base_option():
    m = RealNVP(IMAGE, num_classes=K, class_conditional_base=False, **FIT)
    assert m.prior is None and m.get_config()["class_conditional_base"] is False
    images, labels = data(2)
    assert np.all(np.isfinite(m.log_prob(images, labels)))
    assert m.sample(2, labels=[0, 1], seed=0).shape == (2, *IMAGE)


# fit on (images, labels) arrays runs with the suite; the tf.data variant with the slow tests.
@pytest.mark.slow
@pytest.mark.tf_only
def test_fit_on_a_dataset_of_images_and_labels():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    m = RealNVP(IMAGE, num_classes=K, refresh_batches=1, **FIT)
    m.compile(learning_rate=1e-2)
    images, labels = data(32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    history = m.fit(dataset, epochs=1, verbose=0, validation_data=dataset)
    assert np.isfinite(history.history["val_bits_per_dim"][-1])


@pytest.mark.slow
def test_classify_learns_classes_of_the_shipped_data():
    """Two classes of Fashion-MNIST (trousers, bags): after a short training run the
    likelihood-based classifier is far better than chance on held-out images."""
    from tfp_realnvp.data import load_labelled_images, pad_images

    images, labels, _ = load_labelled_images("shipped", split="all")
    keep = np.isin(labels, [1, 8])
    images, labels = pad_images(images[keep], 32)[:, ::4, ::4], (labels[keep] == 8).astype(np.int32)
    train, test = slice(0, 1600), slice(1600, None)
    keras.utils.set_random_seed(0)
    m = RealNVP(images.shape[1:], num_classes=2, **TINY)
    m.compile(learning_rate=3e-3)
    m.fit(images[train], labels[train], batch_size=64, epochs=3, verbose=0)
    accuracy = np.mean(m.classify(images[test]).argmax(axis=1) == labels[test])
    assert accuracy > 0.8, accuracy
