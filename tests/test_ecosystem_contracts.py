"""What the tools of TFP and of each backend expect from the flow.

* TensorFlow: ``dist.trainable_variables`` (also through ``tfb.Chain``/``tfb.Invert``)
  lists every weight, so the canonical ``GradientTape`` + Keras optimizer loop trains,
  eagerly and in ``tf.function``, also a flow built lazily by its first call;
  ``tf.train.Checkpoint`` of the flow or the distribution saves every variable and
  restores it into a fresh flow.
* The batch-norm mode is never stale: eagerly (same tensor, training then inference),
  in ``tf.function`` (the mode is in the trace signature), under ``jax.jit`` (a static
  argument; training mode only through ``stateless_call``).
* JAX: a flow built lazily under ``jax.jit`` keeps working; training-mode batch norm
  under a user's ``jax.jit`` refuses with a clear error and works through
  ``stateless_call`` with ``jax.jit`` + ``jax.value_and_grad``.
* ``log_prob`` of every sample is finite, with weights far from the identity.
* ``copy()``, batch shape ``[]``, and slicing a distribution over a batched base.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from helpers import (
    BACKEND,
    REORDER_RTOL,
    SMALL,
    assert_close,
    fresh,
    is_tracer,
    make_dist,
    make_flow,
    pixels,
    sample_seed,
    tensor,
    to_numpy,
    variable_values,
)
from tfp_realnvp import MultiScaleFlow, tfb, tfd

IMAGE = (4, 4, 2)
TRAINING = {"bijector_kwargs": {"training": True}}

jax_only = pytest.mark.skipif(BACKEND != "jax", reason=f"needs the JAX backend; running on {BACKEND}")


def images(batch=8, seed=0, dtype="float32"):
    return tensor(pixels(np.random.default_rng(seed), (batch,) + IMAGE), dtype)


def float32_dist(flow):
    """The flow over a float32 standard normal on ``IMAGE``."""
    return tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float32(0.0), np.float32(1.0)), list(IMAGE)), flow)


def small_flow(num_scales=2, **kwargs):
    """A built float32 flow with batch norm (the TFP user's default dtype)."""
    return make_flow(num_scales, True, image=IMAGE, dtype=None, **kwargs)


# 1. TFP finds the weights (TensorFlow) ---------------------------------------------------
def refs(variables):
    """Identities of ``tf.Variable``s, or of the ``tf.Variable`` behind each Keras variable."""
    import tensorflow as tf

    return [(v if isinstance(v, tf.Variable) else v.value).ref() for v in variables]


def holders(flow):
    base = tfd.Sample(tfd.Normal(np.float32(0.0), np.float32(1.0)), list(IMAGE))
    return {
        "distribution": float32_dist(flow),
        "chain": tfb.Chain([tfb.Shift(np.float32(1.0)), flow]),
        "invert": tfb.Invert(flow),
        "distribution_of_chain": tfd.TransformedDistribution(base, tfb.Chain([tfb.Scale(np.float32(2.0)), flow])),
    }


@pytest.fixture(scope="module")
def listed_flow():
    """A two-scale flow with batch norm in the conditioners, which the tests only read."""
    return small_flow(conditioner_batch_norm=True)


@pytest.mark.tf_only
@pytest.mark.parametrize("holder", ["distribution", "chain", "invert", "distribution_of_chain"])
def test_tfp_lists_every_weight_of_the_flow(holder, listed_flow):
    flow = listed_flow
    obj = holders(flow)[holder]
    for kind in ("trainable_variables", "non_trainable_variables", "variables"):
        found, expected = refs(getattr(obj, kind)), refs(getattr(flow, kind))
        assert len(found) == len(set(found)) == len(expected), kind
        assert set(found) == set(expected), kind
    assert len(flow.non_trainable_variables) > 0


@pytest.mark.tf_only
def test_lazily_built_flow_is_listed_once_built():
    flow = MultiScaleFlow(**SMALL)
    dist = holders(flow)["distribution"]
    assert list(dist.trainable_variables) == []
    dist.log_prob(images())
    assert set(refs(dist.trainable_variables)) == set(refs(flow.trainable_variables))
    assert len(dist.trainable_variables) == len(flow.trainable_variables) > 0


@pytest.mark.tf_only
@pytest.mark.parametrize("lazy", [False, True], ids=["built", "lazy"])
@pytest.mark.parametrize("compile_step", [False, True], ids=["eager", "tf_function"])
def test_canonical_training_loop(compile_step, lazy):
    import tensorflow as tf

    # One scale keeps the traces short; the variables of two scales are listed above.
    flow = MultiScaleFlow(num_scales=1, **SMALL) if lazy else small_flow(num_scales=1)
    dist = float32_dist(flow)
    x = images()
    if lazy:
        dist.log_prob(x)  # the first call builds the flow
    variables = dist.trainable_variables
    before = variable_values(variables)
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(variables)  # slots now, so that the compiled step traces once

    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x, **TRAINING))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, grads

    if compile_step:
        step = tf.function(step)
    losses = []
    for _ in range(3):  # each eager step runs the flow and Adam op by op: seconds
        loss, grads = step(x)
        losses.append(float(loss))
    assert all(g is not None for g in grads)
    assert all(b > a for a, b in zip(losses[1:], losses[:-1])), losses
    changed = [not np.array_equal(a, b) for a, b in zip(variable_values(variables), before)]
    assert all(changed)
    if compile_step:
        assert step.experimental_get_tracing_count() == 1


# 2. Checkpoints (TensorFlow) --------------------------------------------------------------
def checkpointed_flow(seed=None):
    return make_flow(2, True, image=IMAGE, seed=seed, num_blocks=2, conditioner_batch_norm=True)


@pytest.fixture(scope="module")
def checkpointed():
    """The flow that the checkpoint tests save (and only read), a batch and its log-density."""
    flow = checkpointed_flow(seed=3)
    x = images(4, dtype="float64")
    return flow, x, to_numpy(make_dist(flow).log_prob(x))


@pytest.mark.tf_only
@pytest.mark.parametrize("holder", ["flow", "dist"])
def test_checkpoint_saves_and_restores_every_variable(holder, checkpointed, tmp_path):
    import tensorflow as tf

    def held(flow):
        return flow if holder == "flow" else make_dist(flow)

    flow, x, expected = checkpointed
    path = tf.train.Checkpoint(**{holder: held(flow)}).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.endswith(".ATTRIBUTES/VARIABLE_VALUE")]
    assert len(saved) == len(flow.variables)
    # Every convolution of every residual block, of every coupling (v, g and bias).
    for conv in ("block0_conv1", "block0_conv2", "block1_conv1", "block1_conv2"):
        assert sum(f"/{conv}/" in name for name in saved) == 3 * len(flow.couplings), conv

    restored = checkpointed_flow(seed=4)
    assert np.max(np.abs(to_numpy(make_dist(restored).log_prob(fresh(x))) - expected)) > 1e-3
    status = tf.train.Checkpoint(**{holder: held(restored)}).read(path)
    status.assert_consumed()
    assert_close(make_dist(restored).log_prob(fresh(x)), expected, atol=0.0)
    for a, b in zip(variable_values(restored.variables), variable_values(flow.variables)):
        np.testing.assert_array_equal(a, b)

    # A lazily built flow takes the values when its first call creates the variables.
    lazy = MultiScaleFlow(num_scales=2, num_filters=4, num_blocks=2, conditioner_batch_norm=True, dtype="float64")
    lazy_dist = make_dist(lazy, IMAGE)
    status = tf.train.Checkpoint(**{holder: lazy if holder == "flow" else lazy_dist}).read(path)
    assert_close(lazy_dist.log_prob(fresh(x)), expected, atol=0.0)
    status.assert_consumed()


# 3. The batch-norm mode is never stale ---------------------------------------------------
def randomised_flow(seed=5):
    """Float64, batch norm in the flow and in the conditioners, moving averages far
    from any batch statistics."""
    return make_flow(1, True, image=IMAGE, seed=seed, conditioner_batch_norm=True)


def test_training_then_inference_on_the_same_tensor():
    flow = randomised_flow()
    dist = make_dist(flow)
    x = images(4, dtype="float64")
    training = to_numpy(dist.log_prob(x, **TRAINING))
    inference = to_numpy(dist.log_prob(x))
    assert np.max(np.abs(training - inference)) > 1e-3
    # Each equals a computation from scratch in its mode.
    assert_close(inference, dist.log_prob(fresh(x)), atol=0.0)
    assert_close(training, dist.log_prob(fresh(x), **TRAINING), atol=1e-9, rtol=REORDER_RTOL)
    # And the other way round.
    again = to_numpy(dist.log_prob(x))
    assert_close(again, dist.log_prob(fresh(x)), atol=0.0)


def test_a_training_call_refreshes_results_cached_before_it():
    """Inference-mode results held by the caller (so TFP's cache keeps them) are
    computed again once training mode has moved the moving averages."""
    flow = randomised_flow()
    x = images(4, dtype="float64")
    z_before = flow.inverse(x)
    ildj_before = flow.inverse_log_det_jacobian(x, event_ndims=3)
    flow.inverse(x, training=True)
    z_after = flow.inverse(x)
    ildj_after = flow.inverse_log_det_jacobian(x, event_ndims=3)
    assert_close(z_after, flow.inverse(fresh(x)), atol=0.0)
    assert_close(ildj_after, flow.inverse_log_det_jacobian(fresh(x), event_ndims=3), atol=0.0)
    assert np.max(np.abs(to_numpy(z_after) - to_numpy(z_before))) > 1e-3
    assert np.max(np.abs(to_numpy(ildj_after) - to_numpy(ildj_before))) > 1e-3


@pytest.mark.tf_only
def test_mode_is_part_of_the_tf_function_signature():
    import tensorflow as tf

    flow = randomised_flow()
    dist = make_dist(flow)
    x = images(4, dtype="float64")
    log_prob = tf.function(lambda x, training: dist.log_prob(x, bijector_kwargs={"training": training}))
    training = log_prob(x, True)
    inference = log_prob(x, False)
    assert np.max(np.abs(to_numpy(training) - to_numpy(inference))) > 1e-3
    assert_close(inference, dist.log_prob(fresh(x)), atol=1e-9, rtol=REORDER_RTOL)
    assert_close(training, dist.log_prob(fresh(x), **TRAINING), atol=1e-9, rtol=REORDER_RTOL)
    log_prob(fresh(x), True)
    log_prob(fresh(x), False)
    assert log_prob.experimental_get_tracing_count() == 2
    # A tensor cannot select the statistics of a trace.
    with pytest.raises(ValueError, match="training must be a Python bool"):
        log_prob(x, tf.constant(True))


def pure_values(flow):
    return [v.value for v in flow.trainable_variables], [v.value for v in flow.non_trainable_variables]


@jax_only
def test_mode_under_jax_jit():
    import jax

    flow = randomised_flow()
    dist = make_dist(flow)
    x = images(4, dtype="float64")

    def log_prob(x, training):
        return dist.log_prob(x, bijector_kwargs={"training": training})

    jitted = jax.jit(log_prob, static_argnames="training")
    inference = jitted(x, training=False)
    assert_close(inference, dist.log_prob(fresh(x)), atol=1e-9, rtol=REORDER_RTOL)
    with pytest.raises(ValueError, match="stateless_call"):
        jitted(x, training=True)
    with pytest.raises(ValueError, match="training must be a Python bool"):
        jax.jit(log_prob)(x, True)

    # Training mode through the pure path: one compiled function per mode.
    params, state = pure_values(flow)
    pure = jax.jit(
        lambda params, state, x, training: flow.stateless_call(
            params, state, dist.log_prob, x, bijector_kwargs={"training": training}
        ),
        static_argnames="training",
    )
    pure_inference, inference_state = pure(params, state, x, training=False)
    pure_training, training_state = pure(params, state, x, training=True)
    assert_close(pure_inference, inference, atol=1e-9, rtol=REORDER_RTOL)
    for new, old in zip(inference_state, state):
        np.testing.assert_array_equal(to_numpy(new), to_numpy(old))
    assert np.max(np.abs(to_numpy(pure_training) - to_numpy(inference))) > 1e-3
    # The same values, and the same new statistics, as an eager training call.
    eager_training = dist.log_prob(fresh(x), **TRAINING)
    assert_close(pure_training, eager_training, atol=1e-9, rtol=REORDER_RTOL)
    for new, variable in zip(training_state, flow.non_trainable_variables):
        assert_close(new, variable, atol=1e-9, rtol=REORDER_RTOL)


# 4. JAX: lazy building under jit, refusals, the pure path -----------------------------------
def assert_no_tracers(flow):
    assert flow.variables and not any(is_tracer(v.value) for v in flow.variables)


@jax_only
def test_lazily_built_flow_first_used_under_jit_keeps_working():
    import jax

    flow = MultiScaleFlow(num_scales=1, **SMALL)
    dist = float32_dist(flow)
    x = images(3)
    first = jax.jit(dist.log_prob)(x)
    assert flow.built
    assert_no_tracers(flow)
    assert_close(dist.log_prob(fresh(x)), first, atol=1e-4, rtol=1e-5)
    assert_close(jax.jit(dist.log_prob)(fresh(x)), first, atol=1e-4, rtol=1e-5)
    samples = dist.sample(2, seed=sample_seed(0))
    jitted_samples = jax.jit(lambda key: dist.sample(2, seed=key))(sample_seed(0))
    assert_close(jitted_samples, samples, atol=1e-3, rtol=1e-5)
    assert np.all(np.isfinite(to_numpy(dist.log_prob(samples))))
    assert_no_tracers(flow)


@jax_only
@pytest.mark.parametrize(
    "batch_norm, conditioner_batch_norm", [(True, False), (False, True)], ids=["flow_bn", "conditioner_bn"]
)
def test_training_mode_under_a_user_jit_refuses(batch_norm, conditioner_batch_norm):
    import jax

    flow = make_flow(2, batch_norm, image=IMAGE, dtype=None, seed=1, conditioner_batch_norm=conditioner_batch_norm)
    dist = float32_dist(flow)
    x = images(4)
    before = variable_values(flow.variables)
    with pytest.raises(ValueError, match=re.escape("MultiScaleFlow.stateless_call")):
        jax.jit(lambda x: dist.log_prob(x, **TRAINING))(x)
    assert_no_tracers(flow)
    for a, b in zip(variable_values(flow.variables), before):
        np.testing.assert_array_equal(a, b)
    # The flow still works, eagerly in both modes.
    assert np.all(np.isfinite(to_numpy(dist.log_prob(fresh(x)))))
    assert np.all(np.isfinite(to_numpy(dist.log_prob(fresh(x), **TRAINING))))


@jax_only
def test_stateless_call_trains_under_jit_and_value_and_grad():
    """An optax-style loop: weights and batch-norm state in, loss and new state out."""
    import jax
    import jax.numpy as jnp

    flow = small_flow(num_scales=1, conditioner_batch_norm=True)
    dist = float32_dist(flow)
    x = images(8)
    before = variable_values(flow.variables)
    params, state = pure_values(flow)

    def loss_fn(params, state, x):
        log_prob, new_state = flow.stateless_call(params, state, dist.log_prob, x, **TRAINING)
        return -jnp.mean(log_prob), new_state

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    losses, new_state = [], state
    for _ in range(5):
        (loss, new_state), grads = step(params, new_state, x)
        params = [p - 1e-2 * g for p, g in zip(params, grads)]
        losses.append(float(loss))
    assert all(b > a for a, b in zip(losses[1:], losses[:-1])), losses
    for variable, new, old in zip(flow.non_trainable_variables, new_state, state):
        if "num_updates" in variable.path:
            assert float(new) == float(old) + 5, variable.path
        else:
            assert np.any(to_numpy(new) != to_numpy(old)), variable.path
    # Nothing was written to the flow.
    for a, b in zip(variable_values(flow.variables), before):
        np.testing.assert_array_equal(a, b)
    assert_no_tracers(flow)


# 5. Samples have finite densities ---------------------------------------------------------
def test_log_prob_of_every_sample_is_finite():
    # Weights far from the identity: without care, float32 samples reach the ends of
    # the logit step's domain, where the density is not finite.
    flow = small_flow(seed=3, stddev=0.3)
    dist = float32_dist(flow)
    samples = dist.sample(256, seed=sample_seed(1))
    assert np.all(np.isfinite(to_numpy(samples)))
    assert np.all(np.isfinite(to_numpy(dist.log_prob(fresh(samples)))))
    samples, log_prob = dist.experimental_sample_and_log_prob(256, seed=sample_seed(2))
    assert np.all(np.isfinite(to_numpy(log_prob)))
    assert np.all(np.isfinite(to_numpy(dist.log_prob(fresh(samples)))))


# 6. Copies, batch shape, slicing ---------------------------------------------------------
@pytest.fixture(scope="module")
def seeded_flow():
    """A one-scale float64 flow with random weights, which the tests only read."""
    return make_flow(1, True, image=IMAGE, seed=2)


def test_copy_is_the_same_function_and_batch_shape_is_scalar(seeded_flow):
    flow = seeded_flow
    dist = make_dist(flow)
    x = images(3, dtype="float64")
    copy = flow.copy()
    assert copy is flow
    assert_close(make_dist(copy).log_prob(fresh(x)), dist.log_prob(x), atol=0.0)
    with pytest.raises(ValueError, match="num_scales"):
        flow.copy(num_scales=3)
    assert list(flow.experimental_batch_shape()) == [] and list(dist.batch_shape) == []


@pytest.mark.parametrize("kind", ["sample", "independent"])
def test_distribution_over_a_batched_base_slices(kind, seeded_flow):
    flow = seeded_flow
    loc = np.array([0.0, 1.0])
    if kind == "sample":
        base = tfd.Sample(tfd.Normal(loc, 1.0), list(IMAGE))
    else:
        base = tfd.Independent(tfd.Normal(np.broadcast_to(loc[:, None, None, None], (2,) + IMAGE), 1.0), 3)
    dist = tfd.TransformedDistribution(base, flow)
    assert list(dist.batch_shape) == [2] and list(dist.event_shape) == list(IMAGE)
    x = images(3, dtype="float64")
    both = to_numpy(dist.log_prob(x[:, None]))
    assert both.shape == (3, 2) and np.max(np.abs(both[:, 0] - both[:, 1])) > 1e-3
    for i in range(2):
        part = dist[i]
        assert list(part.batch_shape) == [] and part.bijector is flow
        assert_close(part.log_prob(fresh(x)), both[:, i], atol=1e-9)
    assert list(dist[1:].batch_shape) == [1]
