"""Every bijector of the package through the same checks.

One table lists each bijector in each configuration (coupling masks and parities,
batch norm in both modes, the logit step with three margins, squeeze and its inverse,
factor-out around a coupling and around a squeezed chain, the multi-scale flow with
one and two scales, with and without batch norm, with batch norm in the conditioners,
without the logit step), built in float64 with every weight moved away from its
initial value. Each entry goes through:

* exact round trips ``x -> y -> x`` and ``y -> x -> y`` on recomputed inputs (so a
  cached value cannot hide a wrong inverse), finite values, ``fldj == -ildj``;
* log-dets against the ``slogdet`` of an autodiff Jacobian, one value per example;
* event-shape methods: the right shapes for the events it transforms, and a
  ``ValueError`` naming the shape for every event that ``forward``/``inverse`` reject;
* batch shape ``[]``;
* TFP's cache: one pass of the transformation (and of every network) per
  ``log_prob``, ``sample``, ``experimental_sample_and_log_prob``, and per
  ``forward``/``inverse`` with their log-dets; instances built alike keep their own
  cache entries;
* ``copy()`` computes the same function.

What is specific to one bijector (formulas, masks, statistics, argument checks) lives
in that bijector's own test module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from helpers import (
    BACKEND,
    assert_close,
    check_log_det,
    check_round_trips,
    count_calls,
    fresh,
    latent_points,
    make_dist,
    make_flow,
    pixels,
    randomize,
    sample_seed,
    tensor,
    to_numpy,
)
from tfp_realnvp import AffineCoupling, BatchNormalization, FactorOut, LogitPreprocess, Squeeze, tfb
from tfp_realnvp.bijectors import OnePassBijector

EVENT = (4, 4, 2)
SMALL = {"num_filters": 4, "num_blocks": 1}
# Batch statistics on JAX carry float32 rounding (see ``test_batch_norm``).
STATS_TOL = 1e-5 if BACKEND == "jax" else 1e-9


# Points -------------------------------------------------------------------------------
def normal_points(x_event, y_event, batch=3):
    def points(_bijector, rng):
        return tensor(rng.normal(size=(batch,) + x_event)), tensor(rng.normal(size=(batch,) + y_event))

    return points


def logit_points(_bijector, rng):
    return tensor(rng.uniform(-3.0, 3.0, size=(3,) + EVENT)), tensor(pixels(rng, (3,) + EVENT))


def logit_margin_points(bijector, rng):
    """Logits whose images lie inside ``[0, 256]``, and pixels close to its edges."""
    high = math.log((1.0 - bijector.alpha) / bijector.alpha)
    x = rng.uniform(-0.9 * high, 0.9 * high, size=(3,) + EVENT)
    return tensor(x), tensor(pixels(rng, (3,) + EVENT, 0.5, 255.5))


def flow_points(flow, rng):
    return latent_points(flow, rng), tensor(pixels(rng, (2,) + EVENT))


def batch_statistics_points(bn, rng):
    """Points at which training mode is a bijection: the batch statistics are the averages.

    ``y`` has per-channel spreads far from 1; the moving averages are set to its batch
    statistics, and ``x`` is chosen so that ``forward(x)`` (which uses the averages)
    has the same batch statistics. Training-mode ``inverse`` then undoes ``forward``
    and moves the averages nowhere.
    """
    y = rng.normal(size=(3,) + EVENT) * np.array([3.0, 0.5]) + np.array([-4.0, 2.0])
    mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
    bn.state.moving_mean.assign(mean)
    bn.state.moving_variance.assign(var)
    noise = rng.normal(size=(3,) + EVENT)
    noise = (noise - noise.mean(axis=(0, 1, 2))) / noise.std(axis=(0, 1, 2))
    gamma = np.exp(to_numpy(bn.state.log_gamma))
    x = to_numpy(bn.state.beta) + gamma * np.sqrt(var / (var + bn.epsilon)) * noise
    return tensor(x), tensor(y)


# The table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bijector configuration and what it must satisfy.

    Attributes:
        id: test id.
        build: ``seed -> bijector``, float64, every weight randomised by ``seed``.
        x_event: event shape on the latent side (``forward``'s input).
        y_event: event shape on the data side (``inverse``'s input).
        points: ``(bijector, rng) -> (x, y)`` batches on either side.
        atol: round-trip tolerance.
        log_det_atol: tolerance against the autodiff Jacobian.
        kwargs: keyword arguments of every call (the batch-norm mode).
        jacobian_kwargs: keyword arguments of the differentiated map, if not ``kwargs``.
        rejected: ``(direction, shape)`` pairs that ``forward``/``inverse`` must reject.
        couplings: ``bijector -> couplings`` whose networks must run once per pass.
        volume_preserving: the log-det is zero by design.
        log_det_directions: the directions checked against the autodiff Jacobian.
    """

    id: str
    build: Callable
    x_event: tuple
    y_event: tuple
    points: Callable
    atol: float
    log_det_atol: float
    kwargs: dict = field(default_factory=dict)
    jacobian_kwargs: dict | None = None
    rejected: tuple = ()
    couplings: Callable = lambda b: []
    volume_preserving: bool = False
    log_det_directions: tuple = ("forward", "inverse")


def coupling_case(kind, parity):
    def build(seed):
        coupling = AffineCoupling(mask_type=kind, parity=parity, event_shape=EVENT, dtype="float64", **SMALL)
        randomize(coupling.variables, seed)
        return coupling

    return Case(
        id=f"coupling-{kind}-{parity}",
        build=build,
        x_event=EVENT,
        y_event=EVENT,
        points=normal_points(EVENT, EVENT),
        atol=1e-10,
        log_det_atol=1e-9,
        rejected=(("forward", (4, 4, 3)), ("inverse", (8, 4, 2)), ("inverse", (4, 4))),
        couplings=lambda b: [b],
    )


def batch_norm_case(training):
    def build(seed):
        bn = BatchNormalization(event_shape=EVENT, dtype="float64")
        randomize(bn.variables, seed, stddev=0.5)
        return bn

    return Case(
        id=f"batch_norm-{'training' if training else 'inference'}",
        build=build,
        x_event=EVENT,
        y_event=EVENT,
        points=batch_statistics_points if training else normal_points(EVENT, EVENT),
        atol=STATS_TOL if training else 1e-12,
        log_det_atol=STATS_TOL if training else 1e-10,
        kwargs={"training": True} if training else {},
        jacobian_kwargs={} if training else None,
        rejected=(("forward", (4, 4, 3)), ("inverse", (2, 2, 2)), ("inverse", (4, 4))),
    )


def factor_out_build(seed):
    inner = AffineCoupling(mask_type="checkerboard", parity=1, event_shape=(4, 4, 1), dtype="float64", **SMALL)
    randomize(inner.variables, seed)
    return FactorOut(inner)


# FactorOut around a chain with a squeeze, as ``MultiScaleFlow`` nests them.
NESTED_EVENT = (4, 4, 4)


def factor_out_chain_build(seed):
    inner = AffineCoupling(mask_type="channel", parity=0, event_shape=(2, 2, 8), dtype="float64", **SMALL)
    randomize(inner.variables, seed)
    return FactorOut(tfb.Chain([tfb.Invert(Squeeze()), inner, Squeeze()]))


def logit_case(alpha):
    return Case(
        id=f"logit_preprocess-alpha{alpha:g}",
        build=lambda seed: LogitPreprocess(alpha=alpha),
        x_event=EVENT,
        y_event=EVENT,
        points=logit_margin_points,
        atol=1e-9,
        log_det_atol=1e-9,
        rejected=(("forward", (4, 4)),),
    )


def flow_case(num_scales, batch_norm, **kwargs):
    def build(seed):
        return make_flow(num_scales, batch_norm, image=EVENT, seed=seed, **kwargs)

    suffix = "-conditioner_bn" if kwargs.get("conditioner_batch_norm") else ""
    preprocess = kwargs.get("preprocess", True)
    if not preprocess:
        suffix += "-nopreprocess"
    return Case(
        id=f"flow-scales{num_scales}-{'bn' if batch_norm else 'nobn'}{suffix}",
        build=build,
        x_event=EVENT,
        y_event=EVENT,
        # Without the logit step the data side is unbounded like the latent side.
        points=flow_points if preprocess else normal_points(EVENT, EVENT, batch=2),
        atol=1e-8 if preprocess else 1e-9,
        log_det_atol=1e-8,
        rejected=(("inverse", (3, 4, 2)), ("forward", (8, 8, 2)), ("inverse", (4, 6, 2))),
        couplings=lambda b: list(b.couplings),
        # The forward log-det follows from this one, fldj == -ildj and the round trips.
        log_det_directions=("inverse",),
    )


CASES = [
    coupling_case("checkerboard", 0),
    coupling_case("checkerboard", 1),
    coupling_case("channel", 0),
    coupling_case("channel", 1),
    batch_norm_case(training=False),
    batch_norm_case(training=True),
    Case(
        id="logit_preprocess",
        build=lambda seed: LogitPreprocess(alpha=0.05),
        x_event=EVENT,
        y_event=EVENT,
        points=logit_points,
        atol=1e-9,
        log_det_atol=1e-10,
        rejected=(("forward", (4, 4)), ("inverse", (8,))),
    ),
    Case(
        id="squeeze",
        build=lambda seed: Squeeze(),
        x_event=EVENT,
        y_event=(2, 2, 8),
        points=normal_points(EVENT, (2, 2, 8)),
        atol=0.0,
        log_det_atol=1e-12,
        rejected=(
            ("forward", (3, 4, 2)),
            ("forward", (4, 5, 2)),
            ("forward", (4, 4)),
            ("inverse", (8, 8, 1)),
            ("inverse", (2, 2, 6)),
        ),
        volume_preserving=True,
    ),
    Case(
        id="invert_squeeze",
        build=lambda seed: tfb.Invert(Squeeze()),
        x_event=(2, 2, 8),
        y_event=EVENT,
        points=normal_points((2, 2, 8), EVENT),
        atol=0.0,
        log_det_atol=1e-12,
        rejected=(("forward", (2, 2, 6)), ("inverse", (3, 4, 2))),
        volume_preserving=True,
    ),
    Case(
        id="factor_out",
        build=factor_out_build,
        x_event=EVENT,
        y_event=EVENT,
        points=normal_points(EVENT, EVENT),
        atol=1e-10,
        log_det_atol=1e-9,
        rejected=(("forward", (4, 4, 3)), ("inverse", (4, 4, 4)), ("forward", (2, 4, 2))),
        couplings=lambda b: [b.inner],
    ),
    flow_case(1, False),
    flow_case(1, True),
    # The logit step inside the flow is covered by the other flows.
    flow_case(2, False, preprocess=False),
    flow_case(2, True),
    flow_case(2, True, conditioner_batch_norm=True),
    # Appended, so that the entries above keep their seeds.
    logit_case(0.2),
    logit_case(1e-3),
    Case(
        id="factor_out-squeezed_chain",
        build=factor_out_chain_build,
        x_event=NESTED_EVENT,
        y_event=NESTED_EVENT,
        points=normal_points(NESTED_EVENT, NESTED_EVENT),
        atol=1e-10,
        log_det_atol=1e-9,
        # inverse: the chain gets [4, 4, 3], its coupling [2, 2, 12]; forward: the coupling [2, 2, 4].
        rejected=(("inverse", (4, 4, 6)), ("forward", (4, 4, 2))),
        couplings=lambda b: [b.inner.bijectors[1]],
    ),
]
CASE_IDS = [case.id for case in CASES]
REJECTED = [(case, direction, shape) for case in CASES for direction, shape in case.rejected]
REJECTED_IDS = [f"{case.id}-{direction}-{'x'.join(map(str, shape))}" for case, direction, shape in REJECTED]

_BUILT: dict[str, tuple] = {}


def built(case: Case):
    """``(bijector, x, y)`` for a case, built once per session."""
    if case.id not in _BUILT:
        bijector = case.build(10 + CASE_IDS.index(case.id))
        x, y = case.points(bijector, np.random.default_rng(CASE_IDS.index(case.id)))
        _BUILT[case.id] = (bijector, x, y)
    return _BUILT[case.id]


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    return request.param


def one_pass_counter(monkeypatch, bijector):
    """Counts the passes of a bijector's transformation (either direction)."""
    if isinstance(bijector, OnePassBijector):
        return count_calls(monkeypatch, bijector, "_transform")
    target = getattr(bijector, "bijector", bijector)  # the bijector inside ``tfb.Invert``
    return count_calls(monkeypatch, target, "_forward", "_inverse")


def network_calls(case, bijector) -> int:
    return sum(c.network_calls for c in case.couplings(bijector))


# Exactness ----------------------------------------------------------------------------
def test_round_trips_are_exact_and_finite(case):
    bijector, x, y = built(case)
    check_round_trips(bijector, x, y, atol=case.atol, kwargs=case.kwargs)


def test_log_det_matches_autodiff_jacobian(case):
    bijector, x, y = built(case)
    checked = check_log_det(
        bijector,
        x,
        y,
        atol=case.log_det_atol,
        directions=case.log_det_directions,
        kwargs=case.kwargs,
        jacobian_kwargs=case.jacobian_kwargs,
    )
    if not case.volume_preserving:
        # Weights away from the identity: the log-det is far from zero.
        assert all(np.max(np.abs(value)) > 1e-3 for value in checked.values())


# Shapes -------------------------------------------------------------------------------
def test_event_shape_methods(case):
    bijector, _, _ = built(case)
    assert tuple(bijector.forward_event_shape(case.x_event)) == case.y_event
    assert tuple(bijector.inverse_event_shape(case.y_event)) == case.x_event
    assert tuple(to_numpy(bijector.forward_event_shape_tensor(case.x_event))) == case.y_event
    assert tuple(to_numpy(bijector.inverse_event_shape_tensor(case.y_event))) == case.x_event
    # With extra leading dimensions, and with unknown dimensions.
    assert tuple(bijector.forward_event_shape((5,) + case.x_event)) == (5,) + case.y_event
    assert len(bijector.inverse_event_shape([None, None, None])) == 3


@pytest.mark.parametrize("case, direction, shape", REJECTED, ids=REJECTED_IDS)
def test_event_shape_methods_reject_what_transformations_reject(case, direction, shape):
    bijector, _, _ = built(case)
    named = re.escape(str(list(shape)))
    value = np.full(shape if len(shape) < 3 else (1,) + shape, 1.0)
    with pytest.raises(ValueError, match=named):
        getattr(bijector, direction)(tensor(value), **case.kwargs)
    with pytest.raises(ValueError, match=named):
        getattr(bijector, f"{direction}_event_shape")(shape)
    with pytest.raises(ValueError, match=named):
        getattr(bijector, f"{direction}_event_shape_tensor")(shape)


def test_batch_shape_is_scalar(case):
    bijector, _, _ = built(case)
    assert list(bijector.experimental_batch_shape()) == []
    assert to_numpy(bijector.experimental_batch_shape_tensor()).shape == (0,)


# TFP's cache ----------------------------------------------------------------------------
def test_one_pass_per_distribution_call(case, monkeypatch):
    bijector, _, y = built(case)
    dist = make_dist(bijector, case.x_event)
    passes = one_pass_counter(monkeypatch, bijector)
    kw = {"bijector_kwargs": case.kwargs} if case.kwargs else {}
    n_couplings = len(case.couplings(bijector))
    calls = (
        lambda: dist.log_prob(fresh(y), **kw),
        lambda: dist.sample(2, seed=sample_seed(1), **kw),
        lambda: dist.experimental_sample_and_log_prob(2, seed=sample_seed(2), **kw),
    )
    for call in calls:
        before, networks = passes[0], network_calls(case, bijector)
        out = call()
        assert passes[0] - before == 1
        assert network_calls(case, bijector) - networks == n_couplings
        for value in out if isinstance(out, tuple) else (out,):
            assert np.all(np.isfinite(to_numpy(value)))


def test_one_pass_for_a_transformation_and_its_log_dets(case, monkeypatch):
    bijector, x, _ = built(case)
    x = fresh(x)
    passes = one_pass_counter(monkeypatch, bijector)
    y = bijector.forward(x, **case.kwargs)
    bijector.forward_log_det_jacobian(x, event_ndims=3, **case.kwargs)
    bijector.inverse_log_det_jacobian(y, event_ndims=3, **case.kwargs)
    bijector.inverse(y, **case.kwargs)
    assert passes[0] == 1
    bijector.inverse_log_det_jacobian(fresh(y), event_ndims=3, **case.kwargs)
    # A new tensor needs a new pass, unless the log-det is a constant.
    assert passes[0] == (1 if case.volume_preserving else 2)


def test_instances_built_alike_keep_their_own_results(case):
    """TFP's cache is shared by all instances: equal arguments must not share entries."""
    first, x, _ = built(case)
    if not first.variables:
        pytest.skip(f"{case.id} has no weights")
    second = case.build(99)
    assert first != second
    y_first = first.forward(x, **case.kwargs)
    y_second = second.forward(x, **case.kwargs)  # the same input object while y_first lives
    assert_close(y_second, second.forward(fresh(x), **case.kwargs), atol=0.0)
    assert np.max(np.abs(to_numpy(y_first) - to_numpy(y_second))) > 1e-3


# Copies -------------------------------------------------------------------------------
def test_copy_computes_the_same_function(case):
    bijector, x, y = built(case)
    copy = bijector.copy()
    assert_close(copy.forward(fresh(x), **case.kwargs), bijector.forward(fresh(x), **case.kwargs), atol=0.0)
    assert_close(
        copy.inverse_log_det_jacobian(fresh(y), event_ndims=3, **case.kwargs),
        bijector.inverse_log_det_jacobian(fresh(y), event_ndims=3, **case.kwargs),
        atol=case.atol,
    )
    if isinstance(bijector, OnePassBijector):
        # The weights are the bijector's own: a copy is the bijector itself.
        assert copy is bijector
        with pytest.raises(ValueError, match="'name'"):
            bijector.copy(name="other")
