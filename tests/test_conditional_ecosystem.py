"""What TFP's and each backend's tools expect, for a conditional flow and its
class-conditional base: ``dist.trainable_variables`` and a ``GradientTape`` loop,
``tf.train.Checkpoint`` (TensorFlow); ``jax.jit`` and ``jax.value_and_grad`` through
``stateless_call`` (JAX); the context as a traced argument of a compiled function."""

import keras
import numpy as np
import pytest

from helpers import (
    BACKEND,
    REORDER_RTOL,
    SMALL,
    assert_close,
    fresh,
    pixels,
    randomize,
    tensor,
    to_numpy,
    variable_values,
)
from tfp_realnvp import ConditionalNormal, MultiScaleFlow, tfd
from tfp_realnvp.internal.stateless import stateless_call

IMAGE = (4, 4, 2)
K = 3
jax_only = pytest.mark.skipif(BACKEND != "jax", reason=f"needs the JAX backend; running on {BACKEND}")


def flow_and_base(seed=None, dtype=None, num_scales=2):
    flow = MultiScaleFlow(image_shape=IMAGE, num_scales=num_scales, context_dim=K, dtype=dtype, **SMALL)
    base = ConditionalNormal(K, IMAGE, dtype=dtype)
    if seed is not None:
        randomize(flow.variables, seed, stddev=0.2)
        randomize(base.weights, seed + 1, stddev=0.2)
    return flow, base


def images(batch=6, seed=0, dtype="float32"):
    return tensor(pixels(np.random.default_rng(seed), (batch,) + IMAGE), dtype)


def context(labels, dtype="float32"):
    return tensor(np.eye(K)[np.asarray(labels)], dtype)


def refs(variables):
    import tensorflow as tf

    return [(v if isinstance(v, tf.Variable) else v.value).ref() for v in variables]


@pytest.mark.tf_only
def test_tfp_lists_every_weight_of_the_conditional_flow():
    flow, base = flow_and_base()
    dist = tfd.TransformedDistribution(base.distribution(context([0, 1])), flow)
    found, expected = refs(dist.trainable_variables), refs(flow.trainable_variables)
    assert set(found) == set(expected) and len(found) == len(expected)
    embeddings = [c.context_layer.kernel for c in flow.couplings]
    assert set(refs(embeddings)) <= set(found)


@pytest.mark.tf_only
@pytest.mark.parametrize(
    "compile_step", [pytest.param(False, marks=pytest.mark.slow), True], ids=["eager", "tf_function"]
)
def test_canonical_training_loop_with_labels(compile_step):
    import tensorflow as tf

    # One scale keeps the traces short; the variables of two scales are listed above.
    flow, base = flow_and_base(num_scales=1)
    x, c = images(), context([0, 1, 2, 0, 1, 2])
    variables = list(tfd.TransformedDistribution(base.distribution(c), flow).trainable_variables)
    variables += [w.value for w in base.trainable_weights]
    before = variable_values(variables)
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(variables)

    def step(x, c):
        with tf.GradientTape() as tape:
            dist = tfd.TransformedDistribution(base.distribution(c), flow)
            loss = -tf.reduce_mean(dist.log_prob(x, bijector_kwargs={"training": True, "conditional_input": c}))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, grads

    if compile_step:
        step = tf.function(step)
    losses = [float(step(x, c)[0]) for _ in range(3)]
    assert all(b > a for a, b in zip(losses[1:], losses[:-1])), losses
    changed = [not np.array_equal(a, b) for a, b in zip(variable_values(variables), before)]
    assert all(changed)
    if compile_step:
        # A new context tensor is a new value of the same argument: no retrace.
        step(fresh(x), context([2, 2, 2, 1, 1, 1]))
        assert step.experimental_get_tracing_count() == 1


@pytest.mark.tf_only
def test_checkpoint_saves_and_restores_flow_and_base(tmp_path):
    import tensorflow as tf

    flow, base = flow_and_base(seed=3, dtype="float64")
    path = tf.train.Checkpoint(flow=flow, base=base).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.endswith(".ATTRIBUTES/VARIABLE_VALUE")]
    assert len(saved) == len(flow.variables) + len(base.weights)
    assert sum("/_context_layer/kernel/" in name for name in saved) == len(flow.couplings)
    x, c = images(4, dtype="float64"), context([0, 2, 1, 0], "float64")

    def log_prob(flow, base):
        dist = tfd.TransformedDistribution(base.distribution(c), flow)
        return to_numpy(dist.log_prob(fresh(x), bijector_kwargs={"conditional_input": c}))

    expected = log_prob(flow, base)
    flow2, base2 = flow_and_base(seed=11, dtype="float64")
    assert np.max(np.abs(log_prob(flow2, base2) - expected)) > 1e-3
    tf.train.Checkpoint(flow=flow2, base=base2).read(path).assert_consumed()
    assert_close(log_prob(flow2, base2), expected, atol=0.0)


@pytest.mark.slow  # the fast suite traces the context in the tf.function loop and under jax.jit above/below
def test_context_is_a_traced_argument_of_a_compiled_function():
    from helpers import compiled

    flow, base = flow_and_base(seed=4)

    def log_prob(x, c):
        dist = tfd.TransformedDistribution(base.distribution(c), flow)
        return dist.log_prob(x, bijector_kwargs={"conditional_input": c})

    fn = compiled(log_prob)
    x = images(3)
    for labels in ([0, 1, 2], [2, 2, 0]):
        c = context(labels)
        assert_close(fn(x, c), log_prob(fresh(x), c), atol=1e-4, rtol=1e-5)


@jax_only
def test_jax_jit_and_grad_through_stateless_call():
    import jax

    # One scale keeps the compiled program and the eager check short; the variables of
    # two scales are listed above.
    flow, base = flow_and_base(seed=5, num_scales=1)
    x, c = images(), context([0, 1, 2, 0, 1, 2])
    params = [v.value for v in flow.trainable_variables]
    state = [v.value for v in flow.non_trainable_variables]
    base_params = [w.value for w in base.trainable_weights]

    def loss(params, base_params, state, x, c):
        def nll(x):
            dist = tfd.TransformedDistribution(base.distribution(c), flow)
            return -dist.log_prob(x, bijector_kwargs={"training": True, "conditional_input": c}).mean()

        # One scope for the flow's and the base's weights (a nested scope would keep
        # the batch-norm updates to itself).
        value, new_state = stateless_call(
            flow.trainable_variables + base.trainable_weights,
            flow.non_trainable_variables,
            params + base_params,
            state,
            nll,
            x,
        )
        return value, new_state

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (value, new_state), (grads, base_grads) = step(params, base_params, state, x, c)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads + base_grads)
    assert any(np.any(np.asarray(g) != 0) for g in base_grads)
    assert not any(isinstance(v.value, jax.core.Tracer) for v in flow.variables + base.weights)
    # The updated batch-norm state differs from the input state.
    assert any(not np.allclose(np.asarray(a), np.asarray(b)) for a, b in zip(new_state, state))
    # Same numbers eagerly (no jit) for the loss.
    eager, _ = loss(params, base_params, state, fresh(x), c)
    assert_close(value, eager, atol=1e-4, rtol=REORDER_RTOL)
