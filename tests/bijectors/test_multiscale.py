"""MultiScaleFlow: architecture, the closed form at zero, TFP integration, gradients,
the batch-norm mode of every step, one network pass per call, and argument checks.

Exactness, log-dets, event shapes, batch shape, copies and the cache are checked for
several configurations (one and two scales, with and without batch norm, with batch
norm in the conditioners, without the logit step) in ``test_conformance``; the contracts with TFP's and the
backends' tools (variables, checkpoints, compiled modes) in ``test_ecosystem_contracts``."""

import math
import re

import numpy as np
import pytest

from helpers import (
    REORDER_RTOL,
    SMALL,
    assert_close,
    check_round_trips,
    compiled,
    fresh,
    latent_points,
    make_dist,
    make_flow,
    negative_log_prob,
    pixels,
    sample_seed,
    stateless_seed,
    tensor,
    to_numpy,
    value_and_gradients,
    variable_values,
)
from tfp_realnvp import AffineCoupling, LogitPreprocess, MultiScaleFlow, tfd

IMAGE = (8, 8, 2)


def num_couplings(num_scales):
    return 6 * (num_scales - 1) + 4


_RANDOM_FLOW = []


@pytest.fixture
def random_flow():
    """Two scales with batch norm and every weight randomised, built once."""
    if not _RANDOM_FLOW:
        _RANDOM_FLOW.append(make_flow(2, True, seed=23))
    return _RANDOM_FLOW[0]


@pytest.fixture(scope="module")
def images():
    return tensor(pixels(np.random.default_rng(0), (2,) + IMAGE))


# Structure -------------------------------------------------------------------------
@pytest.mark.parametrize("num_scales", [1, 2, 3])
def test_architecture(num_scales):
    flow = MultiScaleFlow(image_shape=(8, 8, 2), num_scales=num_scales, num_filters=4, num_blocks=1)
    kinds = [(c.mask_type, c.parity) for c in flow.couplings]
    assert len(kinds) == num_couplings(num_scales) == len(flow.batch_norms)
    per_scale = [("checkerboard", 0), ("checkerboard", 1), ("checkerboard", 0)] + [
        ("channel", 0),
        ("channel", 1),
        ("channel", 0),
    ]
    assert kinds == per_scale * (num_scales - 1) + [("checkerboard", 0), ("checkerboard", 1)] * 2
    # Filters double after each squeeze: checkerboard couplings of scale l use 4 * 2**l,
    # the channel couplings after its squeeze 4 * 2**(l + 1).
    widths = [c.conditioner.num_filters for c in flow.couplings]
    expected = []
    for scale in range(num_scales - 1):
        expected += [4 * 2**scale] * 3 + [4 * 2 ** (scale + 1)] * 3
    expected += [4 * 2 ** (num_scales - 1)] * 4
    assert widths == expected
    assert flow.network_calls == 0


def test_without_batch_norm_or_preprocess():
    """The steps left out are not in the chain (its exactness: ``test_conformance``)."""
    flow = make_flow(2, False, preprocess=False)
    assert flow.batch_norms == [] and flow.config["preprocess"] is False
    assert len(flow.couplings) == num_couplings(2)
    assert all(isinstance(c, AffineCoupling) for c in flow.couplings)
    assert not any(isinstance(b, LogitPreprocess) for b in flow.chain.bijectors)


# Closed form at zero ------------------------------------------------------------------
@pytest.mark.parametrize("num_scales, alpha", [(1, 0.05), (2, 0.05), (2, 0.1)])
def test_log_prob_closed_form_at_zero_networks(num_scales, alpha):
    flow = make_flow(num_scales, False, alpha=alpha)
    # Batches of 2 throughout the module: on JAX each new shape compiles its ops anew.
    x = pixels(np.random.default_rng(3), (2,) + IMAGE, 0.0, 256.0)
    p = alpha + (1.0 - 2.0 * alpha) * x / 256.0
    y = np.log(p) - np.log(1.0 - p)
    d = math.prod(IMAGE)
    log_normal = -0.5 * np.sum(y**2, axis=(1, 2, 3)) - 0.5 * d * math.log(2.0 * math.pi)
    log_det = np.sum(np.log((1.0 - 2.0 * alpha) / 256.0) - np.log(p) - np.log(1.0 - p), axis=(1, 2, 3))
    log_prob = make_dist(flow).log_prob(tensor(x))
    assert_close(log_prob, log_normal + log_det, atol=1e-9, kind="log-det")
    # Identity couplings, squeezes undone: the latent is the preprocessed image itself.
    assert_close(flow.inverse(tensor(x)), y, atol=1e-10)


# TFP integration ------------------------------------------------------------------------
def test_transformed_distribution_shapes():
    flow = make_flow(2, True, dtype=None)
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), list(IMAGE)), flow)
    assert list(dist.event_shape) == list(IMAGE)
    x = tensor(pixels(np.random.default_rng(4), (5,) + IMAGE), "float32")
    log_prob = dist.log_prob(x)
    assert tuple(log_prob.shape) == (5,)
    assert np.all(np.isfinite(to_numpy(log_prob)))
    samples = dist.sample(3, seed=sample_seed(0))
    assert tuple(samples.shape) == (3,) + IMAGE
    assert np.all(np.isfinite(to_numpy(samples)))
    # A stateless seed gives the same samples every time.
    assert_close(dist.sample(3, seed=stateless_seed(0)), dist.sample(3, seed=stateless_seed(0)), atol=0.0)


def test_sample_and_log_prob_agree():
    flow = make_flow(2, True, preprocess=False, seed=5)
    dist = make_dist(flow)
    samples, log_prob = dist.experimental_sample_and_log_prob(2, seed=sample_seed(1))
    assert tuple(samples.shape) == (2,) + IMAGE and tuple(log_prob.shape) == (2,)
    assert_close(dist.log_prob(fresh(samples)), log_prob, atol=1e-9, kind="log-det")


def test_paper_defaults():
    flow = MultiScaleFlow(image_shape=[4, 4, 3])
    assert len(flow.couplings) == 10 and flow.couplings[0].conditioner.num_filters == 64
    assert flow.couplings[0].conditioner.num_blocks == 8 and len(flow.batch_norms) == 10
    assert flow.config["num_scales"] == 2 and flow.config["image_shape"] == [4, 4, 3]


def test_builds_lazily_from_the_first_call():
    flow = MultiScaleFlow(**SMALL)
    assert not flow.built and flow.image_shape is None and flow.chain is None
    assert flow.variables == [] and flow.couplings == []
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), [4, 4, 3]), flow)
    assert list(dist.event_shape) == [4, 4, 3] and not flow.built
    log_prob = dist.log_prob(tensor(pixels(np.random.default_rng(5), (2, 4, 4, 3)), "float32"))
    assert tuple(log_prob.shape) == (2,)
    assert flow.built and flow.image_shape == (4, 4, 3) and len(flow.couplings) == 10
    assert flow.config["image_shape"] == [4, 4, 3]
    with pytest.raises(ValueError, match=re.escape("[8, 8, 3]")):
        flow.inverse(tensor(np.full((1, 8, 8, 3), 5.0), "float32"))


def test_image_shape_builds_eagerly():
    flow = MultiScaleFlow(image_shape=[4, 4, 2], num_filters=4, num_blocks=1)
    assert flow.built and flow.image_shape == (4, 4, 2)
    assert len(flow.variables) > 0 and flow.network_calls == 0
    assert all(c.built for c in flow.couplings)


# Gradients and compilation ------------------------------------------------------------
def test_every_trainable_weight_gets_a_gradient_eager_and_compiled(random_flow, images):
    loss = negative_log_prob(make_dist(random_flow))
    variables = random_flow.trainable_variables
    # conditioners (conv v, g, bias per convolution; per-channel scale), the flow's batch
    # norm (log_gamma, beta) and, by default, the conditioners' batch norm after each of
    # their three hidden convolutions (gamma, beta)
    assert random_flow.config["conditioner_batch_norm"]
    assert len(variables) == 10 * (3 * 4 + 1) + 10 * 2 + 10 * 3 * 2
    value, grads = value_and_gradients(loss, variables, fresh(images))
    assert np.isfinite(value)
    for variable, grad in zip(variables, grads):
        assert grad is not None, variable.path
        assert grad.shape == tuple(variable.shape)
        assert np.all(np.isfinite(grad)), variable.path
        assert np.max(np.abs(grad)) > 0, f"zero gradient for {variable.path}"
    graph_value, graph_grads = value_and_gradients(loss, variables, fresh(images), compile=True)
    assert_close(graph_value, value, atol=0.0, rtol=REORDER_RTOL)
    for graph_grad, grad in zip(graph_grads, grads):
        assert_close(graph_grad, grad, atol=REORDER_RTOL * np.max(np.abs(grad)), rtol=REORDER_RTOL)


def test_gradient_matches_finite_difference(random_flow, images):
    """Spot-check the gradient of one scale weight against a central difference."""
    loss = negative_log_prob(make_dist(random_flow))
    _, scale_layer = random_flow.couplings[4].layers
    variable = scale_layer.scale
    _, grads = value_and_gradients(loss, [variable], fresh(images))
    original = to_numpy(variable)
    h = 1e-5 if REORDER_RTOL < 1e-6 else 1e-3
    values = []
    for sign in (1.0, -1.0):
        bumped = original.copy()
        bumped[0] += sign * h
        variable.assign(bumped)
        values.append(float(to_numpy(loss(fresh(images)))))
    variable.assign(original)
    assert_close(grads[0][0], (values[0] - values[1]) / (2 * h), atol=0.0, rtol=max(1e-6, 100 * REORDER_RTOL))


def test_compiled_sampling_matches_eager(random_flow):
    dist = make_dist(random_flow)
    seed = stateless_seed(3)
    eager = dist.sample(2, seed=seed)
    graph = compiled(lambda s: make_dist(random_flow).sample(2, seed=s))(seed)
    assert_close(graph, eager, atol=0.0, rtol=REORDER_RTOL)


# One pass and the batch-norm mode -------------------------------------------------------
def test_one_network_pass_per_gradient_and_per_training_call(random_flow, images):
    dist = make_dist(random_flow)
    n = len(random_flow.couplings)

    def calls(fn):
        start = random_flow.network_calls
        fn()
        return random_flow.network_calls - start

    assert (
        calls(lambda: value_and_gradients(negative_log_prob(dist), random_flow.trainable_variables, fresh(images))) == n
    )
    training = {"bijector_kwargs": {"training": True}}
    assert calls(lambda: dist.log_prob(fresh(images), **training)) == n
    assert calls(lambda: dist.experimental_sample_and_log_prob(2, seed=sample_seed(5), **training)) == n
    # Each coupling ran exactly once per call.
    assert all(c.network_calls == random_flow.couplings[0].network_calls for c in random_flow.couplings)


def moving_statistics(flow):
    return variable_values(flow.non_trainable_variables)


@pytest.mark.parametrize("conditioner_batch_norm", [False, True], ids=["flow_bn", "flow_and_conditioner_bn"])
def test_training_argument_reaches_every_batch_norm(images, conditioner_batch_norm):
    flow = make_flow(2, True, seed=6, conditioner_batch_norm=conditioner_batch_norm)
    dist = make_dist(flow)
    before = moving_statistics(flow)
    inference = to_numpy(dist.log_prob(images))
    assert all(np.array_equal(a, b) for a, b in zip(moving_statistics(flow), before))
    training = to_numpy(dist.log_prob(fresh(images), bijector_kwargs={"training": True}))
    after = moving_statistics(flow)
    assert training.shape == (2,) and np.all(np.isfinite(training))
    assert np.max(np.abs(training - inference)) > 1e-3
    # Every moving average (and update count) moved, once.
    assert len(after) == (3 if not conditioner_batch_norm else 3 + 9) * len(flow.couplings)
    for variable, old, new in zip(flow.non_trainable_variables, before, after):
        if "num_updates" in variable.path:
            assert float(new) == float(old) + 1, variable.path
        else:
            assert np.all(old != new), variable.path
    # Inference mode is a fixed bijection again, with the new averages.
    check_round_trips(flow, latent_points(flow, np.random.default_rng(7)), images, atol=1e-8)


# Errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_num_scales(bad):
    with pytest.raises(ValueError, match=re.escape(f"num_scales must be an integer >= 1; received {bad!r}.")):
        MultiScaleFlow(num_scales=bad)


@pytest.mark.parametrize(
    "key, bad, low",
    [("num_filters", 0, 1), ("num_blocks", -1, 0), ("num_filters", 2.5, 1), ("context_channels", 0, 1)],
)
def test_bad_network_sizes(key, bad, low):
    with pytest.raises(ValueError, match=re.escape(f"{key} must be an integer >= {low}; received {bad!r}.")):
        MultiScaleFlow(**{key: bad})


@pytest.mark.parametrize("key, bad", [("batch_norm_momentum", 1.0), ("batch_norm_lag", -0.1)])
def test_bad_batch_norm_rates_are_refused_before_the_flow_is_built(key, bad):
    with pytest.raises(ValueError, match=re.escape(f"{key} must be a finite number")):
        MultiScaleFlow(**{key: bad})


def test_integral_floats_are_counts():
    # As everywhere in the package (internal.arguments): a config read back from JSON.
    flow = MultiScaleFlow(num_scales=2.0, num_filters=4.0, num_blocks=1.0, context_dim=2.0, context_channels=3.0)
    config = flow.config
    counts = {"num_scales": 2, "num_filters": 4, "num_blocks": 1, "context_dim": 2, "context_channels": 3}
    assert {key: config[key] for key in counts} == counts
    assert all(type(config[key]) is int for key in counts)


@pytest.mark.parametrize("bad", [0.0, 0.5, -0.2])
def test_bad_alpha(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        MultiScaleFlow(alpha=bad)


@pytest.mark.parametrize(
    "num_scales, shape",
    [(2, (6, 7, 3)), (2, (8, 5, 1)), (3, (6, 8, 3)), (3, (8, 10, 2)), (4, (16, 12, 1))],
)
def test_sides_must_divide_by_the_scale_factor(num_scales, shape):
    pattern = re.escape(str(list(shape)))
    with pytest.raises(ValueError, match=pattern) as info:
        MultiScaleFlow(image_shape=shape, num_scales=num_scales, **SMALL)
    assert f"num_scales={num_scales}" in str(info.value)
    lazy = MultiScaleFlow(num_scales=num_scales, **SMALL)
    with pytest.raises(ValueError, match=pattern):
        lazy.inverse(tensor(np.full((1,) + shape, 5.0), "float32"))
    assert not lazy.built


@pytest.mark.parametrize("shape", [(8, 8), (8,), (0, 8, 3)])
def test_bad_image_shape(shape):
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        MultiScaleFlow(image_shape=shape, **SMALL)


def test_wrong_rank_input():
    flow = MultiScaleFlow(num_scales=1, **SMALL)
    with pytest.raises(ValueError, match=re.escape("[8, 8]")):
        flow.inverse(tensor(np.full((8, 8), 5.0), "float32"))


def test_other_image_shape_after_build():
    flow = make_flow(1, False, image=(4, 4, 2))
    with pytest.raises(ValueError, match=re.escape("[4, 4, 3]")):
        flow.inverse(tensor(np.full((1, 4, 4, 3), 5.0)))


def test_pixels_inside_the_logit_domain_are_accepted():
    """Samples of the flow may fall slightly outside [0, 256); their density is finite."""
    flow = make_flow(1, False, image=(4, 4, 2))
    x = np.full((2, 4, 4, 2), 10.0)
    x[1, 3, 0, 1] = 265.0
    x[0, 0, 0, 0] = -10.0
    assert np.all(np.isfinite(to_numpy(make_dist(flow).log_prob(tensor(x)))))


@pytest.mark.parametrize("value, shown", [(275.0, "275"), (-20.0, "-20"), (np.nan, "NaN")])
def test_validate_args_checks_the_logit_domain(value, shown):
    flow = make_flow(1, False, image=(4, 4, 2), validate_args=True)
    x = np.full((2, 4, 4, 2), 10.0)
    x[1, 3, 0, 1] = value
    with pytest.raises(ValueError, match=re.escape(shown)):
        make_dist(flow).log_prob(tensor(x))
