"""Recomputing training modes: the same gradients, the same batch-norm updates, less memory.

``recompute="conditioner"`` (level 1) and ``recompute="invertible"`` (level 2) must give
the gradient of every weight, the loss and the moving averages of ``"none"``: checked
in float64 through TFP's ``TransformedDistribution`` (``tf.GradientTape`` on
TensorFlow, ``stateless_call`` + ``jax.value_and_grad`` on JAX), then over a few float32
``fit`` steps of ``RealNVP``, under ``mixed_bfloat16``, and on the compiled JAX train
step's memory.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import BACKEND, make_dist, make_flow, pixels, to_numpy, value_and_gradients
from tfp_realnvp import RECOMPUTE_MODES, AffineCoupling, MultiScaleFlow, RealNVP

LEVELS = ("conditioner", "invertible")
TRAINING = {"bijector_kwargs": {"training": True}}
IMAGE = (8, 8, 2)
#: Examples per batch of the float64 checks: the image and batch of test_multiscale's flows,
#: so that on JAX (where every new shape compiles its ops anew) they reuse the same programs.
BATCH = 2


def training_step(flow, x, *, compile: bool = False, context=None):
    """Loss, gradients of every trainable weight (then of the context, if given), and
    batch-norm state after one training-mode ``log_prob`` through
    ``tfd.TransformedDistribution``."""
    dist = make_dist(flow)

    def kwargs(c):
        return {"bijector_kwargs": {"training": True, **({} if c is None else {"conditional_input": c})}}

    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def loss_fn(params, state, x, c):
            log_prob, new_state = flow.stateless_call(params, state, dist.log_prob, x, **kwargs(c))
            return -jnp.mean(log_prob), new_state

        step = jax.value_and_grad(loss_fn, argnums=(0, 3) if context is not None else 0, has_aux=True)
        if compile:
            step = jax.jit(step)
        params = [v.value for v in flow.trainable_variables]
        state = [v.value for v in flow.non_trainable_variables]
        (loss, new_state), grads = step(params, state, x, context)
        if context is not None:
            grads = list(grads[0]) + [grads[1]]
        return float(loss), [to_numpy(g) for g in grads], [to_numpy(s) for s in new_state]
    import tensorflow as tf

    def step(x, c):
        with tf.GradientTape() as tape:
            if c is not None:
                tape.watch(c)
            loss = -tf.reduce_mean(dist.log_prob(x, **kwargs(c)))
        return loss, tape.gradient(loss, list(flow.trainable_variables) + ([] if c is None else [c]))

    if compile:
        step = tf.function(step)
    loss, grads = step(tf.constant(x), None if context is None else tf.constant(context))
    return float(loss), [to_numpy(g) for g in grads], [to_numpy(v) for v in flow.non_trainable_variables]


def worst_relative_error(grads, reference) -> float:
    """Largest ``max|g - g_ref| / max|g_ref|`` over the weights.

    A bias right before a batch norm has a zero gradient in exact arithmetic (the
    normalisation removes it), so its reference is rounding noise; the denominator is
    floored at 1e-6 of the largest gradient of the flow.
    """
    floor = 1e-6 * max(float(np.max(np.abs(r))) for r in reference)
    return max(float(np.max(np.abs(g - r))) / max(float(np.max(np.abs(r))), floor) for g, r in zip(grads, reference))


# The suite runs the configuration with conditioner batch norm (the default, and the one
# with the most state); plain conditioners run with the slow tests. Both levels compare
# with one reference step.
@pytest.mark.parametrize(
    "conditioner_batch_norm",
    [pytest.param(False, marks=pytest.mark.slow), True],
    ids=["plain_conditioners", "conditioner_batch_norm"],
)
def test_float64_gradients_loss_and_moving_averages_match(conditioner_batch_norm):
    x = pixels(np.random.default_rng(0), (BATCH,) + IMAGE)
    options = {"image": IMAGE, "seed": 1, "conditioner_batch_norm": conditioner_batch_norm}
    loss, grads, state = training_step(make_flow(2, True, **options), x)
    for recompute in LEVELS:
        flow = make_flow(2, True, recompute=recompute, **options)
        assert flow.recompute == recompute
        before = {v.path: to_numpy(v) for v in flow.non_trainable_variables}
        loss_r, grads_r, state_r = training_step(flow, x)
        assert abs(loss_r - loss) <= 1e-10 * abs(loss), recompute
        assert len(grads_r) == len(grads) and all(np.all(np.isfinite(g)) for g in grads_r), recompute
        assert worst_relative_error(grads_r, grads) < 1e-8, recompute
        # The moving averages (and update counts) after the step: updated exactly once.
        assert len(state_r) == len(state)
        for a, b, variable in zip(state_r, state, flow.non_trainable_variables):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{recompute} {variable.path}")
        check_every_moving_average_moved_once(flow, before, state_r)


def check_every_moving_average_moved_once(flow, before, state):
    """Recomputation runs the networks again in the backward pass; the counts show
    that only the forward pass updated the statistics."""
    counts = [(v.path, s) for v, s in zip(flow.non_trainable_variables, state) if "num_updates" in v.path]
    assert len(counts) == len(flow.batch_norms) + sum(
        len(c.conditioner.non_trainable_weights) // 3 for c in flow.couplings
    )
    for path, value in counts:
        assert float(value) == float(before[path]) + 1.0, path


# Level 1 recomputes inside the coupling's ordinary path; level 2 carries the context
# through its own backward pass, so only it runs with the suite.
@pytest.mark.parametrize("recompute", [pytest.param("conditioner", marks=pytest.mark.slow), "invertible"])
def test_conditional_flow_gradients_match_for_weights_and_context(recompute):
    """The context (``conditional_input``) reaches every coupling in the rebuilt backward
    pass too: weights' and the context's gradients equal autodiff's."""
    rng = np.random.default_rng(8)
    x = pixels(rng, (BATCH,) + IMAGE)
    context = np.eye(3)[[0, 2]] + 0.1 * rng.normal(size=(BATCH, 3))
    options = {"image": IMAGE, "seed": 4, "conditioner_batch_norm": True, "context_dim": 3}
    loss, grads, state = training_step(make_flow(2, True, **options), x, context=context)
    loss_r, grads_r, state_r = training_step(make_flow(2, True, recompute=recompute, **options), x, context=context)
    assert abs(loss_r - loss) <= 1e-10 * abs(loss)
    assert float(np.max(np.abs(grads[-1]))) > 0  # the context's gradient
    assert worst_relative_error(grads_r, grads) < 1e-8
    for a, b in zip(state_r, state):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # two compiled train steps
def test_compiled_step_matches_the_compiled_reference():
    """Under ``tf.function``/``jax.jit`` the hand-written backward pass is traced too."""
    x = pixels(np.random.default_rng(2), (4,) + IMAGE)
    options = {"image": IMAGE, "seed": 3, "conditioner_batch_norm": False}
    loss, grads, state = training_step(make_flow(2, True, **options), x, compile=True)
    loss_c, grads_c, state_c = training_step(make_flow(2, True, recompute="invertible", **options), x, compile=True)
    # XLA's fused CPU kernels for exp/tanh/log are not correctly rounded in float64, so
    # the rebuilt inputs carry errors near 1e-10 that the gradients amplify.
    assert abs(loss_c - loss) <= 1e-12 * abs(loss)
    assert worst_relative_error(grads_c, grads) < 1e-6
    for a, b in zip(state_c, state):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_single_coupling_rebuilds_its_input_and_gradient():
    """The coupling's one-pass pull-back against autodiff, including ``dE/dx``."""
    from helpers import randomize, value_and_gradients
    from tfp_realnvp.bijectors.one_pass import transform
    from tfp_realnvp.bijectors.reversible import reversible_transform

    for mask in ("checkerboard", "channel"):
        coupling = AffineCoupling(
            mask_type=mask,
            parity=1,
            event_shape=IMAGE,
            num_filters=4,
            num_blocks=1,
            conditioner_batch_norm=True,
            dtype="float64",
        )
        randomize(coupling.variables, 4)
        x = keras.ops.convert_to_tensor(pixels(np.random.default_rng(3), (BATCH,) + IMAGE) / 64.0 - 2.0)
        weights = np.random.default_rng(5).normal(size=(BATCH,) + IMAGE)

        def loss(x, reversible, coupling=coupling, weights=weights):
            fn = reversible_transform if reversible else (lambda b, x, **kw: transform(b, x, **kw))
            y, log_det = fn(coupling, x, inverse=True, training=False)
            return keras.ops.sum(y * weights) + keras.ops.sum(log_det**2)

        reference = value_and_gradients(lambda x=x: loss(x, False), coupling.trainable_variables)
        value, grads = value_and_gradients(lambda x=x: loss(x, True), coupling.trainable_variables)
        assert abs(value - reference[0]) <= 1e-12 * abs(reference[0])
        assert worst_relative_error(grads, reference[1]) < 1e-10


def small_model(recompute: str, **kwargs) -> RealNVP:
    options = {"num_scales": 2, "num_filters": 8, "num_blocks": 1, "seed": 0, "refresh_batches": 0}
    keras.utils.set_random_seed(0)
    return RealNVP((8, 8, 1), recompute=recompute, **{**options, **kwargs})


def train_losses(model: RealNVP, images: np.ndarray, steps: int = 3) -> list[float]:
    # On TensorFlow a plain tf.function train step (XLA compilation of it takes longer
    # than the steps); JAX always compiles.
    model.compile(learning_rate=1e-3, jit_compile=BACKEND == "jax")
    history = model.fit(images, batch_size=16, epochs=steps, steps_per_epoch=1, verbose=0, shuffle=False)
    return history.history["loss"]


# Several compiled float32 steps per mode: a longer run of what the float64 checks above
# show exactly, so it runs with the slow tests; the suite keeps the save/load check below.
@pytest.mark.slow
@pytest.mark.parametrize("levels", [pytest.param(LEVELS, id="both_levels"), ("invertible",)])
def test_float32_training_agrees_over_a_few_steps(levels, tmp_path):
    """``fit`` (compiled, Keras' own train step) agrees across modes. The trained model
    keeps its mode through save and load."""
    images = np.random.default_rng(6).integers(0, 256, size=(16, 8, 8, 1), dtype=np.uint8)
    reference = small_model("none")
    losses = train_losses(reference, images)
    for recompute in levels:
        model = small_model(recompute)
        assert model.get_config()["recompute"] == recompute
        losses_r = train_losses(model, images)
        np.testing.assert_allclose(losses_r, losses, rtol=2e-4, err_msg=recompute)
        # The weights and batch-norm statistics after the steps.
        for a, b in zip(model.variables, reference.variables):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=5e-4, err_msg=f"{recompute} {a.path}")
        check_config_round_trip(model, tmp_path / f"{recompute}.keras")


# On JAX the two float32 programs take half a minute to compile; the float64 checks above
# run on both backends, this one in the JAX suite with the slow tests.
@(pytest.mark.slow if BACKEND == "jax" else (lambda test: test))
def test_mixed_bfloat16_gradients_match_within_its_precision():
    """Under ``mixed_bfloat16`` the hand-written backward pass returns float32 gradients
    for the float32 weights, close to autodiff's at bfloat16 precision."""
    images = np.random.default_rng(7).integers(0, 256, size=(8, 8, 8, 1), dtype=np.uint8)
    results = {}
    for mode in ("none", "invertible"):
        model = small_model(mode, dtype="mixed_bfloat16")
        loss, grads = value_and_gradients(
            lambda x, model=model: model.compute_loss(y_pred=model(x, training=True)),
            model.trainable_variables,
            keras.ops.convert_to_tensor(images),
        )
        assert all(g is not None and g.dtype == np.float32 and np.all(np.isfinite(g)) for g in grads), mode
        results[mode] = (loss, grads)
    loss, grads = results["none"]
    loss_r, grads_r = results["invertible"]
    assert abs(loss_r - loss) <= 1e-2 * abs(loss)
    scale = max(float(np.max(np.abs(g))) for g in grads)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(grads_r, grads)) < 0.05 * scale


def check_config_round_trip(model, path):
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.flow.recompute == model.flow.recompute
    assert all(c.rematerialize is (model.flow.recompute == "conditioner") for c in loaded.flow.couplings)


@pytest.mark.parametrize("recompute", LEVELS)
def test_the_mode_survives_save_and_load(recompute, tmp_path):
    """The conditioner level rematerializes every coupling (the invertible level none),
    and the mode survives save and load."""
    model = small_model(recompute)
    assert all(c.rematerialize is (recompute == "conditioner") for c in model.flow.couplings)
    model(np.zeros((2, 8, 8, 1), np.uint8))
    check_config_round_trip(model, tmp_path / f"{recompute}.keras")


@pytest.mark.backend_independent
def test_bad_values_are_refused_by_name():
    with pytest.raises(
        ValueError, match=r"recompute must be one of \['none', 'conditioner', 'invertible'\]; received 'full'"
    ):
        MultiScaleFlow(image_shape=IMAGE, recompute="full")
    with pytest.raises(ValueError, match="recompute must be one of .*received 2"):
        RealNVP((8, 8, 1), recompute=2)
    with pytest.raises(ValueError, match="rematerialize must be a bool; received 'yes'"):
        AffineCoupling(mask_type="channel", rematerialize="yes")
    assert RECOMPUTE_MODES == ("none", "conditioner", "invertible")


# Compiles the train step of a larger model three ways (about a minute): with the slow tests.
@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="the compiled step's memory_analysis is a JAX measurement")
def test_invertible_recomputation_shrinks_the_compiled_train_step():
    """Temporary memory of the compiled Keras train step, measured as the benchmark does."""
    from benchmarks.memory import compiled_step_memory

    config = {"image_shape": (16, 16, 3), "num_scales": 2, "num_filters": 16, "num_blocks": 2}
    temp = {mode: compiled_step_memory(config, batch_size=16, recompute=mode)["temp_bytes"] for mode in RECOMPUTE_MODES}
    assert temp["conditioner"] < 0.8 * temp["none"], temp
    assert temp["invertible"] < 0.5 * temp["none"], temp
