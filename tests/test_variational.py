"""Variational dequantization ``q(u | x)`` and the importance-weighted bounds.

* ``q``'s log-density against an autodiff Jacobian in float64 (the map from the uniform
  base noise ``w`` to ``u`` has ``log|det du/dw| = -log q(u | x)``), and the couplings'
  log-det alone.
* On a two-pixel image, where ``log P(x) = log ∫ p(x + u) du`` is computed by
  Gauss-Legendre quadrature: ``∫ p(x + u(w)) / q(u(w) | x) dw = P(x)`` (``q`` is a
  normalised density), the exact variational bound lies below ``log P(x)``, and the
  seeded ``K``-sample bounds of both dequantizations rise towards it.
* A variational model starts as the uniform one; training moves ``q``; the
  ``K``-sample bound is seeded and independent of the batch.
"""

import keras
import numpy as np
import pytest

from helpers import (
    BACKEND,
    jacobian_log_det,
    randomize,
    tensor,
    to_numpy,
)
from tfp_realnvp.internal.compiled import CompiledFunction
from tfp_realnvp.model.dequantization import (
    dequantization_noise,
    dequantization_noise_keys,
    noise_seed_keys,
    noise_seeds,
)
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.model.variational import VariationalDequantizer

LN2 = np.log(2.0)


def run_compiled(model, fn, *args):
    """``fn(*args)`` as a reference: compiled over ``model``'s weights on JAX (which runs
    eager code op by op, slowly, and compiles each operation for each new shape), eager
    on TensorFlow (where tracing costs more than running the small flows here)."""
    if BACKEND == "tensorflow":
        return to_numpy(fn(*args))
    return to_numpy(CompiledFunction(model, fn)(*args))


# q(u | x) in float64 ------------------------------------------------------------------
@pytest.fixture(scope="module")
def dequantizer():
    layer = VariationalDequantizer((4, 4, 2), num_steps=3, num_filters=4, num_blocks=1, dtype="float64")
    randomize(layer.weights, seed=3, stddev=0.3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 4, 4, 2)).astype(np.float64)
    w = rng.uniform(0.02, 0.98, (3, 4, 4, 2))
    return layer, tensor(x), tensor(w)


def test_log_q_is_minus_the_log_det_of_the_map_from_base_noise(dequantizer):
    layer, x, w = dequantizer
    u, log_q = layer(x, w)
    assert to_numpy(u).dtype == np.float64
    assert np.all((to_numpy(u) > 0) & (to_numpy(u) < 1))
    expected = -jacobian_log_det(lambda noise, images: layer(images, noise)[0], w, x)
    np.testing.assert_allclose(to_numpy(log_q), expected, rtol=1e-9, atol=1e-9)
    assert np.min(np.abs(expected)) > 0.1  # q is far from uniform: the check can fail


def test_coupling_log_det_matches_autodiff(dequantizer):
    layer, x, w = dequantizer
    e = keras.ops.log(w) - keras.ops.log1p(-w)
    _, log_det = layer.transform(x, e)
    expected = jacobian_log_det(lambda a, images: layer.transform(images, a)[0], e, x)
    np.testing.assert_allclose(to_numpy(log_det), expected, rtol=1e-9, atol=1e-9)


def test_a_fresh_q_is_the_uniform_distribution():
    layer = VariationalDequantizer((4, 4, 1), dtype="float64")
    w = tensor(np.random.default_rng(1).uniform(0.01, 0.99, (2, 4, 4, 1)))
    u, log_q = layer(tensor(np.full((2, 4, 4, 1), 7.0)), w)
    np.testing.assert_allclose(to_numpy(u), to_numpy(w), atol=1e-12)
    np.testing.assert_allclose(to_numpy(log_q), 0.0, atol=1e-9)


def test_bad_settings_name_the_value():
    with pytest.raises(ValueError, match="'gaussian'"):
        RealNVP((4, 4, 1), num_scales=1, dequantization="gaussian")
    with pytest.raises(ValueError, match="dequantization_steps"):
        RealNVP((4, 4, 1), num_scales=1, dequantization="variational", dequantization_steps=0)


# A two-pixel case with the exact discrete likelihood -------------------------------------
IMAGES = np.array([[0, 0], [0, 255], [3, 128], [255, 40]], dtype=np.uint8).reshape(4, 1, 2, 1)
NODES = 96


def _grid():
    """Gauss-Legendre nodes in ``[0, 1)^2`` ``[G, 1, 2, 1]`` and their weights ``[G]``."""
    t, weights = np.polynomial.legendre.leggauss(NODES)
    t, weights = (t + 1) / 2, weights / 2
    a, b = np.meshgrid(t, t, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=-1).reshape(-1, 1, 2, 1), np.outer(weights, weights).ravel()


@pytest.fixture(scope="module")
def two_pixels():
    """A random variational model of 1x2 images (its uniform twin shares the flow), and
    each image's exact ``log P(x)`` by quadrature."""
    keras.utils.set_random_seed(4)
    settings = dict(num_scales=1, num_filters=4, num_blocks=1, alpha=1e-3, batch_norm=False)
    model = RealNVP((1, 2, 1), dequantization="variational", dequantization_filters=4, **settings)
    uniform = RealNVP((1, 2, 1), **settings)
    randomize(model.flow.variables, seed=5, stddev=0.3)
    randomize(model.dequantizer.weights, seed=6, stddev=0.2)
    for target, source in zip(uniform.flow.variables, model.flow.variables):
        target.assign(source)
    nodes, weights = _grid()
    exact = []
    for image in IMAGES.astype(np.float64):
        log_p = model.log_prob((image + nodes).astype(np.float32), batch_size=len(nodes)).astype(np.float64)
        exact.append(np.log(np.sum(weights * np.exp(log_p))))
    return model, uniform, np.array(exact)


def _log_weights_on_grid(model, image):
    """``log p(x + u(w)) - log q(u(w) | x)`` at the quadrature nodes ``w``, and their weights."""
    nodes, weights = _grid()

    def log_weights(images, noise):
        x, log_q = model._dequantize(images, training=False, noise=noise)
        return model._log_prob_of(x, None, training=False) - log_q

    images = np.repeat(image[None], len(nodes), axis=0)
    return run_compiled(model, log_weights, images, nodes.astype(np.float32)).astype(np.float64), weights


def test_q_is_normalised_and_the_variational_bound_lies_below_log_P(two_pixels):
    model, _, exact = two_pixels
    for image, log_P in zip(IMAGES, exact):
        log_w, weights = _log_weights_on_grid(model, image)
        # E_w[p/q] = ∫ p(x + u) du: holds only if log q is the exact log-density.
        np.testing.assert_allclose(np.log(np.sum(weights * np.exp(log_w))), log_P, atol=2e-3)
        elbo = np.sum(weights * log_w)
        assert elbo < log_P - 0.01, (elbo, log_P)


DRAWS = 16384


def _log_mean_exp(log_w, axis):
    top = np.max(log_w, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.mean(np.exp(log_w - top), axis=axis))


@pytest.mark.parametrize("which", ["uniform", "variational"])
def test_the_k_sample_bounds_lie_above_the_true_bits_and_tighten(two_pixels, which):
    model = two_pixels[0] if which == "variational" else two_pixels[1]
    true_bits = -two_pixels[2] / (2 * LN2)
    keys = noise_seed_keys(noise_seeds(DRAWS))
    log_w = run_compiled(model, model.log_weights_tensor, IMAGES, keys).astype(np.float64)  # [DRAWS, N]
    # The API's K-sample bound is the log-mean-exp of the first K of these draws ...
    for k in (1, 4, 64):
        expected = -_log_mean_exp(log_w[:k], axis=0) / (2 * LN2)
        np.testing.assert_allclose(model.bits_per_dim(IMAGES, samples=k, batch_size=16), expected, rtol=1e-5)
    # ... and every copy of an image gets the same draws, whatever its batch and position.
    copies = model.bits_per_dim(np.tile(IMAGES, (8, 1, 1, 1)), samples=4, batch_size=12)
    np.testing.assert_allclose(copies.reshape(8, len(IMAGES)), np.tile(copies[:4], (8, 1)), rtol=1e-6)
    # The expected K-sample bound, averaged over DRAWS / K independent groups of K draws,
    # against the true bits: above them, and closer as K grows. Its Monte Carlo error
    # is at most that of the mean of all draws' weights (relative standard error ``se``).
    gaps = {}
    for k in (1, 4, 16, 1024):
        groups = -_log_mean_exp(log_w.reshape(DRAWS // k, k, -1), axis=1) / (2 * LN2)
        gaps[k] = float(np.mean(groups - true_bits))
    ratios = np.exp(log_w - _log_mean_exp(log_w, axis=0))
    se = float(np.mean(np.std(ratios, axis=0) / np.sqrt(DRAWS))) / (2 * LN2)
    assert gaps[1] > gaps[4] > gaps[16] > max(gaps[1024], 3 * se), (gaps, se)
    assert gaps[1024] > -3 * se, (gaps, se)
    assert gaps[1] > 0.1, gaps  # the one-draw bound is visibly loose here


# The model's K-sample path ---------------------------------------------------------------
def test_the_draws_reuse_the_evaluation_noise():
    images = np.random.default_rng(2).integers(0, 256, (3, 4, 4, 1)).astype(np.uint8)
    seeds = noise_seeds(3)
    draws = to_numpy(dequantization_noise_keys(tensor(images, "uint8"), noise_seed_keys(seeds)))
    for k, seed in enumerate(seeds):
        np.testing.assert_array_equal(draws[3 * k : 3 * k + 3], to_numpy(dequantization_noise(images, seed)))


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(7)
    model = RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1, dequantization="variational", seed=3)
    randomize(model.flow.variables, seed=8, stddev=0.1)
    randomize(model.dequantizer.weights, seed=9, stddev=0.1)
    images = np.random.default_rng(3).integers(0, 256, (6, 4, 4, 1)).astype(np.uint8)
    return model, images


def test_one_sample_is_the_models_log_prob_and_k_samples_ignore_the_batch(small_model):
    model, images = small_model
    keys = noise_seed_keys(noise_seeds(1))
    one = run_compiled(model, model.log_weights_tensor, images, keys)[0]
    np.testing.assert_allclose(one, model.log_prob(images), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(run_compiled(model, model, images), model.log_prob(images), rtol=1e-6, atol=1e-4)
    full = model.log_prob(images, samples=5, batch_size=256)
    np.testing.assert_allclose(model.log_prob(images, samples=5, batch_size=3), full, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(model.log_prob(images[::-1], samples=5)[::-1], full, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(model.log_prob(images, samples=5), full)  # seeded


def test_k_samples_need_integer_images_and_a_positive_count(small_model):
    model, images = small_model
    with pytest.raises(ValueError, match="samples"):
        model.log_prob(images, samples=0)
    with pytest.raises(ValueError, match="float32"):
        model.log_prob(images.astype(np.float32), samples=2)


def test_a_new_variational_model_scores_like_the_uniform_one():
    keras.utils.set_random_seed(1)
    uniform = RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1)
    variational = RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1, dequantization="variational")
    randomize(uniform.flow.variables, seed=2, stddev=0.1)
    for target, source in zip(variational.flow.variables, uniform.flow.variables):
        target.assign(source)
    images = np.random.default_rng(4).integers(0, 256, (4, 4, 4, 1)).astype(np.uint8)
    np.testing.assert_allclose(variational.log_prob(images), uniform.log_prob(images), rtol=1e-6, atol=1e-4)


@pytest.mark.slow  # a training run
def test_training_moves_q_and_logs_the_bound(tmp_path):
    keras.utils.set_random_seed(2)
    model = RealNVP((4, 4, 1), num_scales=1, num_filters=4, num_blocks=1, dequantization="variational", seed=1)
    model.compile(learning_rate=1e-2)
    before = [to_numpy(v).copy() for v in model.dequantizer.trainable_weights]
    images = np.random.default_rng(5).integers(0, 256, (16, 4, 4, 1)).astype(np.uint8)
    history = model.fit(images, batch_size=8, epochs=1, verbose=0)
    moved = [not np.allclose(a, to_numpy(v)) for a, v in zip(before, model.dequantizer.trainable_weights)]
    assert all(moved), [v.path for v, m in zip(model.dequantizer.trainable_weights, moved) if not m]
    assert np.isfinite(history.history["bits_per_dim"][-1])
    path = tmp_path / "variational.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.dequantization == "variational"
    np.testing.assert_array_equal(loaded.bits_per_dim(images, samples=3), model.bits_per_dim(images, samples=3))
