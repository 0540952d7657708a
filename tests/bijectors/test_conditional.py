"""Conditional couplings and flows: exact log-dets and round trips per label, the context
in TFP's cache key, broadcasting of the context, the class-conditional base, errors."""

import math
import re

import keras
import numpy as np
import pytest

from helpers import (
    SMALL,
    assert_close,
    check_log_det,
    check_round_trips,
    fresh,
    pixels,
    randomize,
    sample_seed,
    tensor,
    to_numpy,
    value_and_gradients,
)
from tfp_realnvp import AffineCoupling, ConditionalNormal, MultiScaleFlow, tfd

K = 3
LABELS = [0, 2]


def one_hot(labels, dtype="float64"):
    return tensor(np.eye(K)[np.asarray(labels)], dtype)


def conditional_flow(seed=5, **kwargs):
    flow = MultiScaleFlow(
        image_shape=(4, 4, 2), num_scales=2, context_dim=K, context_channels=3, dtype="float64", **SMALL, **kwargs
    )
    randomize(flow.variables, seed, stddev=0.2)
    return flow


@pytest.fixture(scope="module")
def flow():
    """``conditional_flow()``, built once for the tests that only read it (inference mode:
    nothing they call moves its batch-norm averages)."""
    return conditional_flow()


def conditional_coupling(mask_type, seed=3):
    coupling = AffineCoupling(
        mask_type=mask_type,
        parity=1,
        event_shape=(4, 4, 2),
        context_dim=K,
        context_channels=2,
        dtype="float64",
        **SMALL,
    )
    randomize(coupling.variables, seed, stddev=0.3)
    return coupling


def latents(flow, rng, context, batch=2):
    z = to_numpy(flow.inverse(tensor(pixels(rng, (batch, 4, 4, 2))), conditional_input=context))
    return tensor(z + 0.01 * rng.normal(size=z.shape))


# Exactness, per label ----------------------------------------------------------------------
@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("mask_type", ["checkerboard", "channel"])
def test_conditional_coupling_is_exact_for_each_label(mask_type, label):
    coupling = conditional_coupling(mask_type)
    rng = np.random.default_rng(label)
    context = one_hot(label)  # [K]: broadcasts over the batch (also one example at a time)
    x, y = tensor(rng.normal(size=(2, 4, 4, 2))), tensor(rng.normal(size=(2, 4, 4, 2)))
    kw = {"conditional_input": context}
    check_round_trips(coupling, x, y, atol=1e-9, kwargs=kw)
    check_log_det(coupling, x, y, atol=1e-8, kwargs=kw)


# The couplings are checked for every label above; the whole flow for one label in the
# fast suite and the other with the slow tests.
@pytest.mark.parametrize("label", [LABELS[0], pytest.param(LABELS[1], marks=pytest.mark.slow)])
def test_conditional_flow_is_exact_for_each_label(flow, label):
    rng = np.random.default_rng(10 + label)
    context = one_hot(label)
    kw = {"conditional_input": context}
    y = tensor(pixels(rng, (2, 4, 4, 2)))
    x = latents(flow, rng, context)
    check_round_trips(flow, x, y, atol=1e-7, kwargs=kw)
    check_log_det(flow, x, y, atol=1e-6, kwargs=kw)


def test_the_context_changes_the_map_and_its_log_det(flow):
    y = tensor(pixels(np.random.default_rng(1), (2, 4, 4, 2)))
    # A new copy of y per context: each context's map and log-det come from one pass of
    # the flow, never from a result cached for another context.
    copies = [fresh(y) for _ in range(K)]
    outs = [to_numpy(flow.inverse(copies[k], conditional_input=one_hot(k))) for k in range(K)]
    dets = [
        to_numpy(flow.inverse_log_det_jacobian(copies[k], event_ndims=3, conditional_input=one_hot(k)))
        for k in range(K)
    ]
    for a in range(K):
        for b in range(a + 1, K):
            assert np.max(np.abs(outs[a] - outs[b])) > 1e-3
            assert np.max(np.abs(dets[a] - dets[b])) > 1e-6


def test_a_context_per_example_equals_one_context_per_call(flow):
    y = tensor(pixels(np.random.default_rng(2), (2, 4, 4, 2)))
    # One pass per call: the map and log-det of the same input tensor and context.
    batch, contexts = fresh(y), one_hot([0, 2])
    both = flow.inverse(batch, conditional_input=contexts)
    both_ldj = flow.inverse_log_det_jacobian(batch, event_ndims=3, conditional_input=contexts)
    for i, label in enumerate([0, 2]):
        one, context = fresh(y[i : i + 1]), one_hot([label])
        single = flow.inverse(one, conditional_input=context)
        single_ldj = flow.inverse_log_det_jacobian(one, event_ndims=3, conditional_input=context)
        assert_close(to_numpy(both)[i : i + 1], single, atol=1e-10)
        assert_close(to_numpy(both_ldj)[i : i + 1], single_ldj, atol=1e-9)


def test_any_context_vector_not_only_one_hot(flow):
    rng = np.random.default_rng(4)
    context = tensor(rng.normal(size=(2, K)))
    y = tensor(pixels(rng, (2, 4, 4, 2)))
    kw = {"conditional_input": context}
    z = flow.inverse(y, **kw)
    assert_close(flow.forward(fresh(z), **kw), y, atol=1e-7)


# The context is part of the cache key --------------------------------------------------------
def test_a_result_cached_for_one_context_is_never_returned_for_another(flow):
    y = tensor(pixels(np.random.default_rng(3), (2, 4, 4, 2)))
    c0, c2 = one_hot([0, 0]), one_hot([2, 2])
    z0 = flow.inverse(y, conditional_input=c0)
    ildj0 = flow.inverse_log_det_jacobian(y, event_ndims=3, conditional_input=c0)
    # Same input tensor, another context: computed anew, equal to a fresh computation.
    z2 = flow.inverse(y, conditional_input=c2)
    ildj2 = flow.inverse_log_det_jacobian(y, event_ndims=3, conditional_input=c2)
    assert_close(z2, flow.inverse(fresh(y), conditional_input=c2), atol=1e-12)
    assert_close(ildj2, flow.inverse_log_det_jacobian(fresh(y), event_ndims=3, conditional_input=c2), atol=1e-12)
    assert np.max(np.abs(to_numpy(z2) - to_numpy(z0))) > 1e-3
    assert np.max(np.abs(to_numpy(ildj2) - to_numpy(ildj0))) > 1e-6
    # The output of inverse under c0 is not mapped back to y by forward under c2.
    back = flow.forward(z0, conditional_input=c2)
    assert np.max(np.abs(to_numpy(back) - to_numpy(y))) > 1e-3
    assert_close(back, flow.forward(fresh(z0), conditional_input=c2), atol=1e-12)
    # And under c0 the cache gives y back exactly.
    assert flow.forward(z0, conditional_input=c0) is y
    # Through a distribution: log_prob of one tensor under two contexts.
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float64(0), np.float64(1)), [4, 4, 2]), flow)
    lp0 = dist.log_prob(y, bijector_kwargs={"conditional_input": c0})
    lp2 = dist.log_prob(y, bijector_kwargs={"conditional_input": c2})
    assert_close(lp2, dist.log_prob(fresh(y), bijector_kwargs={"conditional_input": c2}), atol=1e-10)
    assert np.max(np.abs(to_numpy(lp0) - to_numpy(lp2))) > 1e-6


# The class-conditional base ------------------------------------------------------------------
def test_conditional_base_log_prob_is_the_closed_form(flow):
    base = ConditionalNormal(K, (4, 4, 2), dtype="float64")
    rng = np.random.default_rng(7)
    randomize(base.weights, 8, stddev=0.3)
    labels = [0, 2]
    c = one_hot(labels)
    y = tensor(pixels(rng, (2, 4, 4, 2)))
    dist = tfd.TransformedDistribution(base.distribution(c), flow)
    log_p = dist.log_prob(y, bijector_kwargs={"conditional_input": c})
    z = to_numpy(flow.inverse(fresh(y), conditional_input=c))
    ildj = to_numpy(flow.inverse_log_det_jacobian(fresh(y), event_ndims=3, conditional_input=c))
    loc = to_numpy(base.loc_table)[labels]
    log_scale = to_numpy(base.log_scale_table)[labels]
    gauss = -0.5 * ((z - loc) / np.exp(log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
    assert_close(log_p, gauss.sum(axis=(1, 2, 3)) + ildj, atol=1e-8)


def test_conditional_sampling_through_tfp(flow):
    base = ConditionalNormal(K, (4, 4, 2), dtype="float64")
    c = one_hot([0, 1, 2])
    dist = tfd.TransformedDistribution(base.distribution(c), flow)
    kw = {"bijector_kwargs": {"conditional_input": c}}
    one = dist.sample(seed=sample_seed(1), **kw)
    many = dist.sample(4, seed=sample_seed(2), **kw)
    assert tuple(one.shape) == (3, 4, 4, 2) and tuple(many.shape) == (4, 3, 4, 4, 2)
    assert np.all(np.isfinite(to_numpy(dist.log_prob(many, **kw))))
    samples, log_p = dist.experimental_sample_and_log_prob(seed=sample_seed(3), **kw)
    assert_close(log_p, dist.log_prob(fresh(samples), **kw), atol=1e-6)


@pytest.mark.slow  # the fast suite checks gradients through the training loops of test_conditional_ecosystem
def test_every_weight_gets_a_gradient():
    flow = conditional_flow()
    base = ConditionalNormal(K, (4, 4, 2), dtype="float64")
    randomize(base.weights, 9, stddev=0.1)
    c = one_hot([0, 1])
    y = tensor(pixels(np.random.default_rng(8), (2, 4, 4, 2)))

    def loss(x):
        dist = tfd.TransformedDistribution(base.distribution(c), flow)
        return -keras.ops.mean(dist.log_prob(x, bijector_kwargs={"conditional_input": c, "training": True}))

    variables = flow.trainable_variables + base.trainable_weights
    embeddings = [v for layer in flow.layers if "context" in layer.name for v in layer.trainable_weights]
    assert len(embeddings) == 2 * len(flow.couplings)
    _, grads = value_and_gradients(loss, variables, y)
    for variable, grad in zip(variables, grads):
        assert grad is not None and np.all(np.isfinite(grad)), variable.path
        assert np.any(grad != 0), variable.path


# Errors -----------------------------------------------------------------------------------------
def test_conditional_flow_refuses_a_call_without_context(flow):
    y = tensor(pixels(np.random.default_rng(0), (1, 4, 4, 2)))
    with pytest.raises(ValueError, match="needs conditional_input"):
        flow.inverse(y)
    with pytest.raises(ValueError, match=r"needs conditional_input of shape \[\.\.\., 3\]; received shape \[1, 4\]"):
        flow.inverse(y, conditional_input=tensor(np.zeros((1, 4))))
    with pytest.raises(ValueError, match="float context"):
        flow.inverse(y, conditional_input=keras.ops.convert_to_tensor(np.zeros((1, K), np.int32)))


def test_unconditional_flow_refuses_a_context():
    flow = MultiScaleFlow(image_shape=(4, 4, 2), num_scales=2, dtype="float64", **SMALL)
    y = tensor(pixels(np.random.default_rng(0), (1, 4, 4, 2)))
    with pytest.raises(ValueError, match="not conditional"):
        flow.inverse(y, conditional_input=one_hot([0]))
    with pytest.raises(ValueError, match="takes the keyword argument 'training' only"):
        flow.inverse(y, context=one_hot([0]))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_context_dim(bad):
    with pytest.raises(ValueError, match=re.escape(f"context_dim must be an integer >= 1; received {bad!r}.")):
        MultiScaleFlow(image_shape=(4, 4, 2), context_dim=bad, **SMALL)


def test_flow_config_records_the_context(flow):
    assert flow.conditional and flow.config["context_dim"] == K and flow.config["context_channels"] == 3
    assert not MultiScaleFlow(**SMALL).conditional
