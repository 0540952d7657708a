"""MultiScaleFlow: exactness of the whole flow, the closed form at zero, TFP integration,
gradients, one network pass per call, and argument checks."""

import math
import re

import keras
import numpy as np
import pytest
from helpers import (
    REORDER_RTOL,
    assert_close,
    check_log_det,
    check_round_trips,
    compiled,
    fresh,
    pixels,
    randomize,
    sample_seed,
    stateless_seed,
    tensor,
    to_numpy,
    value_and_gradients,
)

from tfp_realnvp import AffineCoupling, MultiScaleFlow, tfd

IMAGE = (8, 8, 2)
SMALL = {"num_filters": 4, "num_blocks": 1}
CONFIGS = [(1, False), (1, True), (2, False), (2, True)]
CONFIG_IDS = [f"scales{s}-{'bn' if bn else 'nobn'}" for s, bn in CONFIGS]


def make_flow(num_scales=2, batch_norm=True, *, image=IMAGE, dtype="float64", seed=None, **kwargs):
    flow = MultiScaleFlow(image_shape=image, num_scales=num_scales, batch_norm=batch_norm, dtype=dtype, **SMALL, **kwargs)
    if seed is not None:
        randomize(flow.variables, seed, stddev=0.2)
    return flow


def make_dist(flow, dtype="float64"):
    zero, one = np.array(0.0, dtype), np.array(1.0, dtype)
    return tfd.TransformedDistribution(tfd.Sample(tfd.Normal(zero, one), list(flow.image_shape)), flow)


def num_couplings(num_scales):
    return 6 * (num_scales - 1) + 4


_RANDOM_FLOWS = {}


def random_flow_for(num_scales, batch_norm):
    """A float64 flow with every weight randomised, built once per configuration."""
    key = (num_scales, batch_norm)
    if key not in _RANDOM_FLOWS:
        _RANDOM_FLOWS[key] = make_flow(num_scales, batch_norm, seed=20 + CONFIGS.index(key))
    return _RANDOM_FLOWS[key]


@pytest.fixture(params=CONFIGS, ids=CONFIG_IDS)
def flow(request):
    return random_flow_for(*request.param)


@pytest.fixture
def random_flow():
    """Two scales with batch norm and every weight randomised."""
    return random_flow_for(2, True)


@pytest.fixture(scope="module")
def images():
    return tensor(pixels(np.random.default_rng(0), (2,) + IMAGE))


def latent_points(flow, rng, batch=2):
    """Latents whose images lie inside ``[0, 256)`` (the forward map also reaches beyond)."""
    z = to_numpy(flow.inverse(tensor(pixels(rng, (batch,) + IMAGE))))
    return tensor(z + 0.01 * rng.normal(size=z.shape))


# Structure -------------------------------------------------------------------------
@pytest.mark.parametrize("num_scales", [1, 2, 3])
def test_architecture(num_scales):
    flow = MultiScaleFlow(image_shape=(8, 8, 2), num_scales=num_scales, num_filters=4, num_blocks=1)
    kinds = [(c.mask_type, c.parity) for c in flow.couplings]
    assert len(kinds) == num_couplings(num_scales) == len(flow.batch_norms)
    per_scale = [("checkerboard", 0), ("checkerboard", 1), ("checkerboard", 0)] + [("channel", 0), ("channel", 1), ("channel", 0)]
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
    flow = make_flow(2, False, preprocess=False, seed=1)
    assert flow.batch_norms == [] and flow.config["preprocess"] is False
    assert all(isinstance(c, AffineCoupling) for c in flow.couplings)
    rng = np.random.default_rng(1)
    x = tensor(rng.normal(size=(2,) + IMAGE))
    y = tensor(rng.normal(size=(2,) + IMAGE))
    check_round_trips(flow, x, y, atol=1e-9)


# Exactness -------------------------------------------------------------------------
def test_round_trips(flow, images):
    z = latent_points(flow, np.random.default_rng(1))
    before = flow.network_calls
    check_round_trips(flow, z, images, atol=1e-8)
    assert flow.network_calls > before


def test_log_det_matches_autodiff_jacobian(flow, images):
    # The forward log-det follows from this one and fldj == -ildj (test_round_trips).
    check_log_det(flow, None, images, atol=1e-8, directions=("inverse",))


def test_inverse_log_det_is_per_example(flow, images):
    ildj = to_numpy(flow.inverse_log_det_jacobian(images, event_ndims=3))
    assert ildj.shape == (2,)
    assert abs(ildj[0] - ildj[1]) > 1e-6


# Closed form at zero ------------------------------------------------------------------
@pytest.mark.parametrize("num_scales, alpha", [(1, 0.05), (2, 0.05), (2, 0.1)])
def test_log_prob_closed_form_at_zero_networks(num_scales, alpha):
    flow = make_flow(num_scales, False, alpha=alpha)
    x = pixels(np.random.default_rng(3), (3,) + IMAGE, 0.0, 256.0)
    p = alpha + (1.0 - 2.0 * alpha) * x / 256.0
    y = np.log(p) - np.log(1.0 - p)
    d = math.prod(IMAGE)
    log_normal = -0.5 * np.sum(y**2, axis=(1, 2, 3)) - 0.5 * d * math.log(2.0 * math.pi)
    log_det = np.sum(np.log((1.0 - 2.0 * alpha) / 256.0) - np.log(p) - np.log(1.0 - p), axis=(1, 2, 3))
    log_prob = make_dist(flow).log_prob(tensor(x))
    assert_close(log_prob, log_normal + log_det, atol=1e-9, kind="log-det")
    # Identity couplings, squeezes undone: the latent is the preprocessed image itself.
    assert_close(flow.inverse(tensor(x)), y, atol=1e-10)


def test_equal_flows_do_not_share_cached_results(images):
    """Two flows built alike but holding different weights map the same tensor differently."""
    first, second = make_flow(1, True, seed=40), make_flow(1, True, seed=41)
    assert first != second
    z_first = first.inverse(images)
    z_second = second.inverse(images)  # the same input object while z_first is alive
    assert_close(z_second, second.inverse(fresh(images)), atol=0.0)
    assert np.max(np.abs(to_numpy(z_first) - to_numpy(z_second))) > 1e-3
    assert_close(
        second.inverse_log_det_jacobian(images, event_ndims=3),
        second.inverse_log_det_jacobian(fresh(images), event_ndims=3),
        atol=0.0,
    )


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
    samples, log_prob = dist.experimental_sample_and_log_prob(4, seed=sample_seed(1))
    assert tuple(samples.shape) == (4,) + IMAGE and tuple(log_prob.shape) == (4,)
    assert_close(dist.log_prob(fresh(samples)), log_prob, atol=1e-9, kind="log-det")


def test_builds_lazily_with_paper_defaults():
    flow = MultiScaleFlow()
    assert not flow.built and flow.image_shape is None and flow.chain is None
    assert flow.variables == [] and flow.couplings == []
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), [4, 4, 3]), flow)
    log_prob = dist.log_prob(tensor(pixels(np.random.default_rng(5), (2, 4, 4, 3)), "float32"))
    assert tuple(log_prob.shape) == (2,)
    assert flow.built and flow.image_shape == (4, 4, 3)
    assert len(flow.couplings) == 10 and flow.couplings[0].conditioner.num_filters == 64
    assert flow.couplings[0].conditioner.num_blocks == 8
    assert flow.config["num_scales"] == 2 and flow.config["image_shape"] == [4, 4, 3]
    with pytest.raises(ValueError, match=re.escape("[8, 8, 3]")):
        flow.inverse(tensor(np.full((1, 8, 8, 3), 5.0), "float32"))


def test_image_shape_builds_eagerly():
    flow = MultiScaleFlow(image_shape=[4, 4, 2], num_filters=4, num_blocks=1)
    assert flow.built and flow.image_shape == (4, 4, 2)
    assert len(flow.variables) > 0 and flow.network_calls == 0
    assert all(c.built for c in flow.couplings)


# Gradients and compilation ------------------------------------------------------------
def negative_log_prob(dist):
    def loss(x):
        return -keras.ops.sum(dist.log_prob(x)) / x.shape[0]

    return loss


def test_every_trainable_weight_gets_a_gradient_eager_and_compiled(random_flow, images):
    loss = negative_log_prob(make_dist(random_flow))
    variables = random_flow.trainable_variables
    # conditioners (conv v, g, bias per convolution; per-channel scale) and batch norm
    assert len(variables) == 10 * (3 * 4 + 1) + 10 * 2
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


# One pass -----------------------------------------------------------------------------
def test_one_network_pass_per_call(random_flow, images):
    dist = make_dist(random_flow)
    n = len(random_flow.couplings)

    def calls(fn):
        start = random_flow.network_calls
        fn()
        return random_flow.network_calls - start

    assert calls(lambda: dist.log_prob(fresh(images))) == n
    assert calls(lambda: dist.sample(2, seed=sample_seed(4))) == n
    assert calls(lambda: dist.experimental_sample_and_log_prob(2, seed=sample_seed(5))) == n
    assert calls(lambda: value_and_gradients(negative_log_prob(dist), random_flow.trainable_variables, fresh(images))) == n
    with random_flow.training_mode(True):
        assert calls(lambda: dist.log_prob(fresh(images))) == n
    # Each coupling ran exactly once per call.
    assert all(c.network_calls == random_flow.couplings[0].network_calls for c in random_flow.couplings)


def test_training_mode_reaches_every_batch_norm(images):
    flow = make_flow(2, True, seed=6)
    dist = make_dist(flow)
    assert not flow.training
    inference = to_numpy(dist.log_prob(images))
    with flow.training_mode(True):
        assert flow.training and all(bn.training for bn in flow.batch_norms)
        before = [(to_numpy(bn.state.moving_mean), to_numpy(bn.state.moving_variance)) for bn in flow.batch_norms]
        training = to_numpy(dist.log_prob(fresh(images)))
        after = [(to_numpy(bn.state.moving_mean), to_numpy(bn.state.moving_variance)) for bn in flow.batch_norms]
    assert not flow.training and not any(bn.training for bn in flow.batch_norms)
    assert training.shape == (2,) and np.all(np.isfinite(training))
    assert np.max(np.abs(training - inference)) > 1e-3
    # Every batch-norm step moved both of its averages.
    for (mean0, var0), (mean1, var1) in zip(before, after):
        assert np.all(mean0 != mean1) and np.all(var0 != var1)
    # Back in inference mode the flow is a fixed bijection again.
    check_round_trips(flow, latent_points(flow, np.random.default_rng(7)), images, atol=1e-8)


# Errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_num_scales(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        MultiScaleFlow(num_scales=bad)


@pytest.mark.parametrize("key, bad", [("num_filters", 0), ("num_blocks", -1), ("num_filters", 2.0)])
def test_bad_network_sizes(key, bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        MultiScaleFlow(**{key: bad})


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


@pytest.mark.parametrize("value, shown", [(256.25, "256.25"), (-3.0, "-3"), (np.nan, "NaN")])
def test_pixels_out_of_range(value, shown):
    flow = make_flow(1, False, image=(4, 4, 2))
    x = np.full((2, 4, 4, 2), 10.0)
    x[1, 3, 0, 1] = value
    with pytest.raises(ValueError, match=re.escape(shown)):
        make_dist(flow).log_prob(tensor(x))
