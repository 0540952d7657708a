"""The ``RealNVP`` Keras model: likelihood API, training, save/load and resume.

Runs on both backends (``KERAS_BACKEND=tensorflow`` or ``jax``); tests that need
``tf.data`` are marked ``tf_only``. Models are tiny (8x8 images, one scale, 8 filters,
one residual block) and shared between tests through module-scoped fixtures, because
tracing a flow is what costs time here.
"""

from __future__ import annotations

import math
import os
import time

import keras
import numpy as np
import pytest

import tfp_realnvp
from helpers import (
    perturb,
    to_numpy,
)
from tfp_realnvp.internal.compiled import CompiledFunction
from tfp_realnvp.model.baselines import independent_pixel_bits_per_dim
from tfp_realnvp.model.dequantization import dequantization_noise
from tfp_realnvp.model.inputs import InputKind, classify_fit_input

BACKEND = keras.backend.backend()
TINY = {"num_filters": 8, "num_blocks": 1}
# XLA compilation of a whole flow is slower than tracing it on CPU; JAX always jits.
COMPILE = {"jit_compile": False} if BACKEND == "tensorflow" else {}


def run_compiled(model, fn, *args):
    """``fn(*args)`` as a reference: compiled over ``model``'s weights on JAX (which runs
    eager code op by op, slowly), eager on TensorFlow (where tracing a flow costs seconds
    and running it eagerly a fraction of one)."""
    if BACKEND == "tensorflow":
        return to_numpy(fn(*args))
    return to_numpy(CompiledFunction(model, fn)(*args))


def structured_images(rng: np.random.Generator, n: int, shape=(8, 8, 1)) -> np.ndarray:
    """uint8 images whose left and right halves are each one constant value."""
    h, w, c = shape
    left = rng.integers(0, 256, (n, 1, 1, c))
    right = rng.integers(0, 256, (n, 1, 1, c))
    columns = np.arange(w)[None, None, :, None]
    return (np.where(columns < w // 2, left, right) * np.ones((n, h, w, c))).astype(np.uint8)


def batch_norm_state(model) -> list[np.ndarray]:
    return [to_numpy(v) for bn in model.flow.batch_norms for v in (bn.state.moving_mean, bn.state.moving_variance)]


def weight_scale_l2(model) -> float:
    return model.l2_scale * sum(float(np.sum(to_numpy(g).astype(np.float64) ** 2)) for g in model.flow.weight_scales())


def fit_steps(model, images, steps: int, batch_size: int, **kwargs):
    """``fit`` for exactly ``steps`` unshuffled steps, one epoch per pass over ``images``."""
    per_epoch = len(images) // batch_size
    assert steps % per_epoch == 0
    return model.fit(images, batch_size=batch_size, epochs=steps // per_epoch, shuffle=False, verbose=0, **kwargs)


# Fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_model():
    """A model on 8x8x2 images with weights moved off the identity.

    One scale: what these tests check (the likelihood API, its batching, seeds and
    argument checks) does not depend on the number of scales, and each of its compiled
    functions traces half as many operations as with two (the flows of several scales
    are checked in ``tests/bijectors``).
    """
    keras.utils.set_random_seed(1)
    model = tfp_realnvp.RealNVP((8, 8, 2), num_scales=1, seed=3, **TINY)
    perturb(model.variables, seed=1)
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(2).integers(0, 256, (6, 8, 8, 2)).astype(np.uint8)


@pytest.fixture(scope="module")
def train_images():
    return structured_images(np.random.default_rng(4), 128)


def _train(train_images) -> dict:
    keras.utils.set_random_seed(5)
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, seed=5, **TINY)
    model.compile(**COMPILE)
    initial_bn = batch_norm_state(model)
    history = fit_steps(model, train_images, steps=48, batch_size=16)
    return {
        "model": model,
        "history": history.history,
        "initial_bn": initial_bn,
        "iterations": int(to_numpy(model.optimizer.iterations)),
    }


@pytest.fixture(scope="module")
def trained(train_images, tmp_path_factory):
    """A one-scale model trained 48 steps on structured images, and what it logged.

    Trained once per test session: when the tests run in several processes (xdist),
    the first to need it trains and saves it (with its optimizer state), the others
    load that ``.keras`` file instead of training their own.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path, logs, failed = (shared / f"model_trained.{end}" for end in ("keras", "npz", "failed"))
    try:
        os.close(os.open(shared / "model_trained.lock", os.O_CREAT | os.O_EXCL))
    except FileExistsError:  # another process trains it: wait for its files
        deadline = time.monotonic() + 1800
        while not logs.exists():
            assert not failed.exists(), "training the shared model failed in another test process"
            assert time.monotonic() < deadline, "no shared model after 30 minutes"
            time.sleep(0.2)
        with np.load(logs) as saved:
            return {
                "model": keras.models.load_model(path),
                "history": {key[len("history/") :]: list(saved[key]) for key in saved if key.startswith("history/")},
                "initial_bn": [saved[f"initial_bn/{i}"] for i in range(int(saved["num_bn"]))],
                "iterations": int(saved["iterations"]),
            }
    try:
        result = _train(train_images)
        result["model"].save(path)
        arrays = {f"history/{key}": np.asarray(values) for key, values in result["history"].items()}
        arrays.update({f"initial_bn/{i}": value for i, value in enumerate(result["initial_bn"])})
        partial = shared / "model_trained.partial.npz"
        np.savez(partial, num_bn=len(result["initial_bn"]), iterations=result["iterations"], **arrays)
        os.replace(partial, logs)
    except BaseException:
        failed.touch()
        raise
    return result


# Likelihood API ---------------------------------------------------------------------
def test_log_prob_matches_the_distribution_on_float_images(api_model, images):
    x = images.astype(np.float32) + 0.25
    expected = run_compiled(api_model, api_model.distribution.log_prob, x)
    actual = api_model.log_prob(x)
    assert actual.shape == (len(x),)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-3)
    # The perturbed weights give different images clearly different densities.
    assert np.ptp(actual) > 1.0


def test_log_prob_shape_and_bits_per_dim(api_model, images):
    log_prob = api_model.log_prob(images, batch_size=3)
    assert log_prob.shape == (6,) and log_prob.dtype == np.float32
    assert np.all(np.isfinite(log_prob))
    bpd = api_model.bits_per_dim(images, batch_size=3)
    np.testing.assert_allclose(bpd, -log_prob / (8 * 8 * 2 * math.log(2.0)), rtol=1e-6)
    # A single [H, W, C] image is a batch of one.
    np.testing.assert_allclose(api_model.log_prob(images[0]), log_prob[:1], rtol=1e-6, atol=1e-3)


def test_call_returns_float32_log_prob(api_model, images):
    out = run_compiled(api_model, api_model, images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, api_model.log_prob(images), rtol=1e-5, atol=1e-3)


def test_integer_images_are_dequantized_with_seeded_noise(api_model, images):
    first = api_model.log_prob(images)
    np.testing.assert_array_equal(api_model.log_prob(images), first)
    # log p(x) of integers is the density at x + u for the model's noise u ...
    noise = to_numpy(dequantization_noise(keras.ops.convert_to_tensor(images)))
    dequantized = api_model.log_prob(images.astype(np.float32) + noise)
    np.testing.assert_allclose(first, dequantized, rtol=1e-5, atol=1e-3)
    # ... and not at x itself: float images are taken as they are.
    assert np.all(np.abs(api_model.log_prob(images.astype(np.float32)) - first) > 1e-2)


def test_integer_log_prob_does_not_depend_on_the_batch(api_model, images):
    whole = api_model.log_prob(images)
    np.testing.assert_allclose(api_model.log_prob(images, batch_size=3), whole, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(api_model.log_prob(images[::-1])[::-1], whole, rtol=1e-5, atol=1e-3)
    for i in (0, 5):
        np.testing.assert_allclose(api_model.log_prob(images[i : i + 1]), whole[i : i + 1], rtol=1e-5, atol=1e-3)


def test_dequantization_noise_is_uniform_and_per_image():
    rng = np.random.default_rng(6)
    batch = rng.integers(0, 256, (64, 8, 8, 2)).astype(np.uint8)
    noise = to_numpy(dequantization_noise(keras.ops.convert_to_tensor(batch)))
    assert noise.shape == batch.shape and noise.dtype == np.float32
    assert noise.min() >= 0.0 and noise.max() < 1.0
    # Uniform: chi-square over 16 bins (99.9% quantile of chi2 with 15 dof is 37.7).
    counts, _ = np.histogram(noise, bins=16, range=(0.0, 1.0))
    expected = noise.size / 16
    assert np.sum((counts - expected) ** 2 / expected) < 37.7
    # Neighbouring pixels and neighbouring images are uncorrelated.
    flat = noise.reshape(64, -1) - 0.5
    assert abs(np.mean(flat[:, 1:] * flat[:, :-1])) / np.var(flat) < 0.05
    assert abs(np.mean(flat[1:] * flat[:-1])) / np.var(flat) < 0.05
    # A function of each image alone: the same image gets the same noise anywhere in
    # any batch; two images that differ in one pixel get unrelated noise.
    single = to_numpy(dequantization_noise(keras.ops.convert_to_tensor(batch[7:8])))
    np.testing.assert_array_equal(single[0], noise[7])
    # ... whatever the integer dtype that holds it.
    wide = to_numpy(dequantization_noise(keras.ops.convert_to_tensor(batch.astype(np.int32))))
    np.testing.assert_array_equal(wide, noise)
    twin = batch[7:8].copy()
    twin[0, 0, 0, 0] ^= 1
    other = to_numpy(dequantization_noise(keras.ops.convert_to_tensor(twin)))
    assert np.mean(other[0] == noise[7]) < 0.05
    # Another seed, other noise.
    reseeded = to_numpy(dequantization_noise(keras.ops.convert_to_tensor(batch), seed=(1, 2)))
    assert np.mean(reseeded == noise) < 0.01


def test_encode_decode_round_trip(api_model, images):
    z = api_model.encode(images)
    assert z.shape == images.shape and z.dtype == np.float32
    assert np.all(np.isfinite(z))
    decoded = api_model.decode(z)
    assert decoded.dtype == np.uint8 and decoded.shape == images.shape
    diff = np.abs(decoded.astype(int) - images.astype(int))
    # floor(x + u) = x; float error may only push a u at the edge of [0, 1) across.
    assert diff.max() <= 1
    assert np.mean(diff) < 0.01


def test_encode_is_the_flow_inverse(api_model, images):
    x = images.astype(np.float32) + 0.5
    expected = run_compiled(api_model, api_model.flow.inverse, x)
    np.testing.assert_allclose(api_model.encode(x), expected, rtol=1e-4, atol=1e-4)


def test_sample_is_seeded(api_model):
    a = api_model.sample(3, temperature=0.7, seed=11)
    assert a.shape == (3, 8, 8, 2) and a.dtype == np.uint8
    np.testing.assert_array_equal(api_model.sample(3, temperature=0.7, seed=11), a)
    b = api_model.sample(3, temperature=0.7, seed=12)
    # (Many pixels of this untrained flow saturate at 0 or 255, so not all differ.)
    assert np.mean(a != b) > 0.25
    # Three draws of one call are different images.
    assert np.mean(a[0] != a[1]) > 0.25


def test_sample_temperature_scales_the_latent(api_model):
    # At a near-zero temperature every latent is ~0, whatever the seed.
    cold = [api_model.sample(2, temperature=1e-4, seed=s) for s in (1, 2)]
    mode = api_model.decode(np.zeros((1, 8, 8, 2), np.float32))
    for images in cold:
        assert np.abs(images.astype(int) - mode.astype(int)).max() <= 1
    hot = api_model.sample(2, temperature=1.0, seed=1)
    assert np.mean(np.abs(hot.astype(int) - mode.astype(int))) > 5


def test_interpolate_ends_at_the_images(api_model, images):
    path = api_model.interpolate(images[0], images[1], steps=5)
    assert path.shape == (5, 8, 8, 2) and path.dtype == np.uint8
    for end, image in ((path[0], images[0]), (path[-1], images[1])):
        diff = np.abs(end.astype(int) - image.astype(int))
        assert diff.max() <= 1 and np.mean(diff) < 0.01
    # The middle is neither end.
    assert np.mean(path[2] != images[0]) > 0.5 and np.mean(path[2] != images[1]) > 0.5


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda m: m.sample(0, seed=1), "0"),
        (lambda m: m.sample(2.5, seed=1), "2.5"),
        (lambda m: m.sample(2, temperature=-1, seed=1), "-1"),
        (lambda m: m.sample(2, temperature=0.0, seed=1), "0.0"),
        (lambda m: m.sample(2, temperature=float("nan"), seed=1), "nan"),
        (lambda m: m.sample(2, temperature=float("inf"), seed=1), "inf"),
        (lambda m: m.interpolate(np.zeros((8, 8, 2), np.uint8), np.zeros((8, 8, 2), np.uint8), steps=1), "1"),
        (lambda m: m.log_prob(np.zeros((2, 8, 8, 3), np.uint8)), "[2, 8, 8, 3]"),
        (lambda m: m.log_prob(np.zeros((2, 16, 16, 2), np.float32)), "[2, 16, 16, 2]"),
        (lambda m: m.log_prob(np.zeros((8, 8), np.uint8)), "[8, 8]"),
        (lambda m: m.encode(np.zeros((1, 8, 8, 1), np.uint8)), "[1, 8, 8, 1]"),
        (lambda m: m.decode(np.zeros((1, 8, 8, 1), np.float32)), "[1, 8, 8, 1]"),
        (lambda m: m.log_prob(np.full((1, 8, 8, 2), 300.0, np.float32)), "300"),
        (lambda m: m.log_prob(np.full((1, 8, 8, 2), 300, np.int32)), "300"),
        (lambda m: m.bits_per_dim(np.full((1, 8, 8, 2), -3.0, np.float32)), "-3"),
        (lambda m: m.log_prob(np.full((1, 8, 8, 2), np.nan, np.float32)), "NaN"),
        (lambda m: m.log_prob(np.zeros((2, 8, 8, 2), np.uint8), batch_size=0), "0"),
        (lambda m: m.decode(np.zeros((2, 8, 8, 2), np.float32), batch_size=-4), "-4"),
        (lambda m: m.encode(np.zeros((0, 8, 8, 2), np.uint8)), "[0, 8, 8, 2]"),
        (lambda m: m.decode(np.full((1, 8, 8, 2), np.inf, np.float32)), "128 NaN or infinite"),
        (lambda m: m.compile(loss="mse"), "mse"),
    ],
    ids=[
        "zero-samples",
        "fractional-samples",
        "negative-temperature",
        "zero-temperature",
        "nan-temperature",
        "inf-temperature",
        "one-step",
        "channels",
        "size",
        "rank",
        "encode-shape",
        "decode-shape",
        "float-300",
        "int-300",
        "negative",
        "nan",
        "zero-batch-size",
        "negative-batch-size",
        "empty",
        "decode-inf",
        "loss",
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(api_model, call, shown):
    with pytest.raises(ValueError) as info:
        call(api_model)
    assert shown in str(info.value)


def test_compiled_functions_do_not_retrace():
    keras.utils.set_random_seed(7)
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, **TINY)
    rng = np.random.default_rng(7)
    a, b = (rng.integers(0, 256, (4, 8, 8, 1)).astype(np.uint8) for _ in range(2))
    assert not np.allclose(model.log_prob(a), model.log_prob(b))
    assert model._compiled["log_prob"].traces == 1
    z = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    model.decode(z)
    model.decode(z + 1.0)
    assert model._compiled["decode"].traces == 1
    # Seeds and temperatures are inputs, not constants of the trace.
    model.sample(2, seed=1)
    model.sample(2, seed=2, temperature=0.5)
    assert model._compiled["sample"].traces == 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.sample(0, seed=1), "num_samples must be an integer >= 1; received 0."),
        (lambda m: m.sample(2, temperature=0.0, seed=1), "temperature must be a finite number > 0.0; received 0.0."),
        (
            lambda m: m.interpolate(np.zeros((8, 8, 2), np.uint8), np.zeros((8, 8, 2), np.uint8), steps=1),
            "steps must be an integer >= 2; received 1.",
        ),
        (
            lambda m: m.log_prob(np.zeros((2, 8, 8, 2), np.uint8), batch_size=0),
            "batch_size must be an integer >= 1; received 0.",
        ),
    ],
    ids=["num_samples", "temperature", "steps", "batch_size"],
)
def test_argument_messages_name_the_bound(api_model, call, message):
    with pytest.raises(ValueError) as info:
        call(api_model)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "key, bad, message",
    [
        ("l2_scale", -1, "l2_scale must be a finite number >= 0.0; received -1."),
        ("refresh_batches", -1, "refresh_batches must be an integer >= 0; received -1."),
        ("refresh_batches", 1.5, "refresh_batches must be an integer >= 0; received 1.5."),
        ("context_channels", 0, "context_channels must be an integer >= 1; received 0."),
    ],
)
def test_bad_model_arguments(key, bad, message):
    with pytest.raises(ValueError) as info:
        tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, **{key: bad}, **TINY)
    assert str(info.value) == message


def test_fit_inputs_are_classified_in_one_place():
    images, labels = np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, np.int32)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return images

    assert classify_fit_input(images).kind is InputKind.ARRAYS
    assert classify_fit_input(images, labels).kind is InputKind.ARRAYS
    assert classify_fit_input((images, labels)).kind is InputKind.PAIR
    assert classify_fit_input([images, labels]).kind is InputKind.PAIR
    assert classify_fit_input(iter([images])).kind is InputKind.ITERATOR
    assert classify_fit_input(batch for batch in [images]).kind is InputKind.ITERATOR
    assert classify_fit_input(Batches()).kind is InputKind.PY_DATASET
    assert classify_fit_input(None).kind is InputKind.NONE
    assert classify_fit_input(Batches()).describe() == "a Batches"
    assert classify_fit_input(images).describe() == "a ndarray of shape [4, 8, 8, 1]"


@pytest.mark.tf_only
def test_a_tf_data_dataset_is_classified_as_a_dataset():
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, 8, 8, 1), np.uint8)).batch(2)
    assert classify_fit_input(dataset).kind is InputKind.DATASET
    assert classify_fit_input(dataset).describe() == f"a {type(dataset).__name__}"


def test_independent_pixel_baseline():
    images = np.zeros((2, 4, 4, 1), np.uint8)
    # Each position: 2 zeros plus one pseudo-count in each of the 256 bins.
    assert independent_pixel_bits_per_dim(images, images) == pytest.approx(-math.log2(3 / 258))
    with pytest.raises(ValueError, match=r"smoothing must be a finite number > 0\.0; received 0\."):
        independent_pixel_bits_per_dim(images, images, smoothing=0)


# Compile and training ---------------------------------------------------------------
def test_default_optimizer_is_clipped_adam():
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, **TINY)
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    assert model.optimizer.global_clipnorm == 1.0
    assert model.optimizer.built, "the optimizer is built with the model, before the first step"
    model.compile(learning_rate=3e-4, clipnorm=None)
    assert float(to_numpy(model.optimizer.learning_rate)) == pytest.approx(3e-4)
    assert model.optimizer.global_clipnorm is None
    sgd = keras.optimizers.SGD(0.01)
    model.compile(optimizer=sgd)
    assert model.optimizer is sgd
    assert [m.name for m in model.metrics] == ["loss", "bits_per_dim"]


def test_fit_logs_loss_and_bits_per_dim(trained):
    history = trained["history"]
    assert set(history) == {"loss", "bits_per_dim"}
    assert len(history["loss"]) == 6
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["bits_per_dim"]))
    # The training loss is bits/dim plus the (small, positive) L2 term.
    gap = np.asarray(history["loss"]) - np.asarray(history["bits_per_dim"])
    assert np.all(gap > 0) and np.all(gap < 0.05)
    assert trained["iterations"] == 48


def test_loss_decreases_on_structured_images(trained):
    bpd = trained["history"]["bits_per_dim"]
    # An untrained flow scores 8x8 images near 8 bits/dim; constant halves are learnable.
    assert bpd[0] > 7.5
    assert bpd[-1] < bpd[0] - 0.8
    assert all(later < earlier + 0.05 for earlier, later in zip(bpd, bpd[1:]))


def test_batch_norm_averages_move_in_fit_only(trained, train_images):
    model = trained["model"]
    after_fit = batch_norm_state(model)
    moved = [not np.allclose(a, b) for a, b in zip(after_fit, trained["initial_bn"])]
    assert all(moved), "every batch-norm average moves during fit"
    model.evaluate(train_images, batch_size=16, verbose=0)
    model.log_prob(train_images)
    model.sample(2, seed=4)
    for a, b in zip(batch_norm_state(model), after_fit):
        np.testing.assert_array_equal(a, b)


def test_evaluate_reports_inference_mode_bits_per_dim(trained, train_images):
    model = trained["model"]
    result = model.evaluate(train_images, batch_size=16, verbose=0, return_dict=True)
    assert set(result) == {"loss", "bits_per_dim"}
    expected = float(np.mean(model.bits_per_dim(train_images)))
    assert result["bits_per_dim"] == pytest.approx(expected, abs=1e-4)

    # With batch statistics instead of moving averages the number differs: evaluate
    # really runs batch norm in inference mode.
    def with_batch_statistics(x):
        return model.distribution.log_prob(x, bijector_kwargs={"training": True})

    saved = [to_numpy(v) for v in model.flow.non_trainable_variables]
    batch_stats = model.to_bits_per_dim(
        run_compiled(model, with_batch_statistics, train_images.astype(np.float32) + 0.5)
    )
    # (Batch statistics move the averages, on TensorFlow; put them back.)
    for variable, value in zip(model.flow.non_trainable_variables, saved):
        variable.assign(value)
    inference = model.bits_per_dim(train_images.astype(np.float32) + 0.5)
    assert abs(np.mean(batch_stats) - np.mean(inference)) > 1e-3


def test_loss_includes_the_weight_scale_l2_term(trained, train_images):
    model = trained["model"]
    result = model.evaluate(train_images, batch_size=16, verbose=0, return_dict=True)
    l2 = weight_scale_l2(model)
    assert model.l2_scale == 5e-5
    assert l2 > 1e-4
    assert result["loss"] - result["bits_per_dim"] == pytest.approx(l2, rel=1e-2, abs=2e-6)
    # compute_loss of given log-likelihoods: their mean in bits/dim, plus l2.
    log_prob = keras.ops.convert_to_tensor(np.array([-300.0, -350.0, -400.0], np.float32))
    loss = float(to_numpy(model.compute_loss(y_pred=log_prob)))
    assert loss == pytest.approx(350.0 / (64 * math.log(2.0)) + l2, rel=1e-6)


def test_l2_term_can_be_disabled():
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, l2_scale=0.0, **TINY)
    log_prob = keras.ops.convert_to_tensor(np.array([-300.0, -400.0], np.float32))
    loss = float(to_numpy(model.compute_loss(y_pred=log_prob)))
    assert loss == pytest.approx(350.0 / (64 * math.log(2.0)), rel=1e-6)
    with pytest.raises(ValueError, match="-1"):
        tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, l2_scale=-1, **TINY)


@pytest.mark.slow
def test_xla_compiled_training_and_evaluation(train_images):
    # JAX always compiles with XLA; TensorFlow does when asked.
    keras.utils.set_random_seed(8)
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, seed=8, **TINY)
    model.compile(jit_compile=True)
    assert model.jit_compile
    history = fit_steps(model, train_images[:32], steps=4, batch_size=8).history
    assert np.all(np.isfinite(history["loss"]))
    result = model.evaluate(train_images[:32], batch_size=8, verbose=0, return_dict=True)
    # The evaluation noise is the same inside XLA as in the uncompiled-by-XLA log_prob.
    assert result["bits_per_dim"] == pytest.approx(float(np.mean(model.bits_per_dim(train_images[:32]))), abs=1e-4)


@pytest.mark.tf_only
def test_fit_on_a_tf_data_dataset(trained, train_images):
    import tensorflow as tf

    model = trained["model"]
    dataset = tf.data.Dataset.from_tensor_slices(train_images).batch(16)
    before = int(to_numpy(model.optimizer.iterations))
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert set(history.history) == {"loss", "bits_per_dim"}
    assert np.isfinite(history.history["loss"][0])
    assert int(to_numpy(model.optimizer.iterations)) == before + 8
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    assert result["bits_per_dim"] == pytest.approx(float(np.mean(model.bits_per_dim(train_images))), abs=1e-4)


# Save, load and resume --------------------------------------------------------------
def test_save_load_and_resume(trained, train_images, tmp_path):
    model = trained["model"]
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, tfp_realnvp.RealNVP)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.log_prob(train_images), model.log_prob(train_images))
    np.testing.assert_array_equal(loaded.sample(2, seed=4), model.sample(2, seed=4))
    # The optimizer comes back as compiled, with its state ...
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert loaded.optimizer.global_clipnorm == 1.0
    assert int(to_numpy(loaded.optimizer.iterations)) == int(to_numpy(model.optimizer.iterations))
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)
    # ... and so does the state of the training dequantization noise.
    np.testing.assert_array_equal(to_numpy(loaded._noise.state), to_numpy(model._noise.state))

    # Training on resumes exactly where it stopped: the loaded model and the original,
    # trained on with the same unshuffled data, take the same steps.
    fit_steps(model, train_images, steps=8, batch_size=16)
    fit_steps(loaded, train_images, steps=8, batch_size=16)
    assert int(to_numpy(loaded.optimizer.iterations)) == int(to_numpy(model.optimizer.iterations))
    for a, b in zip(loaded.variables, model.variables):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=0, atol=1e-6, err_msg=a.path)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-9, err_msg=a.path)


def _fresh_model():
    keras.utils.set_random_seed(9)
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, seed=9, **TINY)
    model.compile(**COMPILE)
    return model


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"interrupted before epoch {epoch}")


@pytest.mark.slow
def test_backup_and_restore_resumes_training(train_images, tmp_path):
    images = train_images[:32]
    reference = _fresh_model()
    fit_steps(reference, images, steps=12, batch_size=8)

    backup = str(tmp_path / "backup")
    interrupted = _fresh_model()
    with pytest.raises(RuntimeError, match="epoch 2"):
        fit_steps(
            interrupted,
            images,
            steps=12,
            batch_size=8,
            callbacks=[keras.callbacks.BackupAndRestore(backup), _Interrupt(2)],
        )
    resumed = _fresh_model()
    history = fit_steps(resumed, images, steps=12, batch_size=8, callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert len(history.history["loss"]) == 1, "only the epoch that was not done runs"
    assert int(to_numpy(resumed.optimizer.iterations)) == 12
    for a, b in zip(resumed.variables, reference.variables):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=0, atol=1e-6, err_msg=a.path)
