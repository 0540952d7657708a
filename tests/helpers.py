"""Backend-agnostic test helpers: conversion, seeds, Jacobians, gradients, error records.

Everything here dispatches on ``keras.backend.backend()`` so that a test body reads
the same on TensorFlow and on JAX.
"""

from __future__ import annotations

import math

import keras
import numpy as np

BACKEND = keras.backend.backend()

# Keras on JAX maps 64-bit result types to 32-bit, so a few ops (``tanh``, ``mean``)
# return float32 even for float64 inputs. Float64 results that pass through them agree
# with another evaluation order (eager against compiled, finite differences) only to
# about float32 precision there; on TensorFlow float64 stays float64 throughout.
REORDER_RTOL = 1e-5 if BACKEND == "jax" else 1e-9

# Largest errors seen by the tests, keyed by (kind, dtype name).
_MAX_ERRORS: dict[tuple[str, str], float] = {}


# Conversion --------------------------------------------------------------------------
def to_numpy(x) -> np.ndarray:
    """A NumPy copy of a backend tensor, Keras variable or array-like.

    Args:
        x: the value to convert.

    Returns:
        A NumPy array with ``x``'s values and dtype.
    """
    return np.asarray(keras.ops.convert_to_numpy(x))


def dtype_name(x) -> str:
    """The standard name of a tensor's or variable's dtype, e.g. ``"float32"``."""
    return keras.backend.standardize_dtype(x.dtype)


def tensor(x, dtype="float64"):
    """A backend tensor holding ``x`` as ``dtype``."""
    return keras.ops.convert_to_tensor(np.asarray(x, dtype=dtype))


def fresh(x):
    """``x + 0``: a new tensor with the same values, unknown to any bijector cache."""
    return x + 0


def sample_seed(i: int = 0):
    """The plain seed a user passes to ``sample``: an int on TF, a PRNG key on JAX."""
    if BACKEND == "jax":
        import jax

        return jax.random.PRNGKey(i)
    return i


def stateless_seed(i: int = 0):
    """A seed that gives the same samples on every call, eager or compiled."""
    if BACKEND == "jax":
        import jax

        return jax.random.PRNGKey(i)
    import tensorflow as tf

    return tf.constant([i, 0], dtype=tf.int32)


def pixels(rng: np.random.Generator, shape, low: float = 8.0, high: float = 248.0) -> np.ndarray:
    """Continuous pixel values in ``[low, high)``, inside ``[0, 256)`` and away from its edges."""
    return rng.uniform(low, high, size=shape)


# Weights -----------------------------------------------------------------------------
def randomize(variables, seed: int, stddev: float = 0.3) -> None:
    """Assigns Gaussian noise to every variable, moving all weights off their initial values.

    Variances (``moving_variance``) get a positive value in ``[0.5, 2)`` instead, and
    update counts (``num_updates``) a whole number in ``[10, 100)``, so that moving
    averages move by their long-run momentum.

    Args:
        variables: the variables to assign (e.g. ``flow.variables``).
        seed: seed of the NumPy generator that draws the values.
        stddev: standard deviation of the Gaussian values.
    """
    rng = np.random.default_rng(seed)
    for v in variables:
        shape = tuple(v.shape)
        if "moving_variance" in v.path:
            value = rng.uniform(0.5, 2.0, size=shape)
        elif "num_updates" in v.path:
            value = rng.integers(10, 100, size=shape).astype(np.float64)
        else:
            value = rng.normal(0.0, stddev, size=shape)
        v.assign(value.astype(v.dtype))


def perturb(variables, seed: int, stddev: float = 0.05) -> None:
    """Adds Gaussian noise to every variable, moving all weights off their current values.

    Unlike ``randomize`` this keeps the initial values as the centre (a trained-looking
    model rather than a random one). Moving means get ``N(0, 0.5)`` noise and moving
    variances a value in ``[0.5, 2)`` instead; the states of
    ``keras.random.SeedGenerator``s are left alone.

    Args:
        variables: the variables to change (e.g. ``model.variables``).
        seed: seed of the NumPy generator that draws the noise.
        stddev: standard deviation of the noise added to the other variables.
    """
    rng = np.random.default_rng(seed)
    for v in variables:
        if "seed_generator" in v.path:
            continue
        value = to_numpy(v)
        if "moving_variance" in v.path:
            value = rng.uniform(0.5, 2.0, value.shape)
        elif "moving_mean" in v.path:
            value = rng.normal(0.0, 0.5, value.shape)
        else:
            value = value + rng.normal(0.0, stddev, value.shape)
        v.assign(value.astype(v.dtype))


# Compilation and differentiation ------------------------------------------------------
def compiled(fn):
    """``fn`` compiled for the backend: ``tf.function`` or ``jax.jit``."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn)


def jacobian_log_det(fn, x, *context) -> np.ndarray:
    """``log|det d fn(x_i) / d x_i|`` for each example of a batch, from one autodiff pass.

    ``fn`` maps each example independently of the others, so the Jacobian at ``x_i`` is
    that of ``fn`` at any copy of ``x_i`` in a larger batch. The batch is repeated ``n``
    times per example (``n`` the event size) and copy ``k`` of each example is seeded with
    the ``k``-th unit vector: one reverse-mode pass (TensorFlow: ``GradientTape.gradient``
    with those output gradients) gives row ``k`` of every example's Jacobian, one
    forward-mode pass (JAX: ``jax.jvp`` with those tangents) column ``k``. This is the
    Jacobian ``tape.batch_jacobian`` and ``jax.vmap(jax.jacfwd(...))`` compute, without
    their vectorizing transformations, which cost seconds of graph building per flow.

    Args:
        fn: maps ``[B, *event]`` (and the ``context`` batches) to ``[B, *event]``, each
            example independently of the others (same event size in and out).
        x: the batch, a backend tensor (use float64 for exact comparisons).
        context: batches ``[B, ...]`` that ``fn`` also takes, example by example, and
            that are not differentiated (e.g. the images a noise map is conditioned on).

    Returns:
        A float64 NumPy array of shape ``[B]``.
    """
    batch, event = int(x.shape[0]), tuple(int(d) for d in x.shape[1:])
    size = math.prod(event)
    copies = tensor(np.repeat(to_numpy(x), size, axis=0), dtype_name(x))  # [B * size, *event]
    repeated = [tensor(np.repeat(to_numpy(c), size, axis=0), dtype_name(c)) for c in context]
    units = np.tile(np.eye(size), (batch, 1)).reshape(copies.shape)  # copy k: unit vector k
    if BACKEND == "jax":
        import jax

        y, columns = jax.jvp(lambda t: fn(t, *repeated), (copies,), (tensor(units, dtype_name(x)),))
        jac = np.swapaxes(to_numpy(columns).reshape(batch, size, -1), 1, 2)
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(copies)
            y = fn(copies, *repeated)
        assert y.shape.num_elements() == units.size, f"not a square Jacobian: {y.shape}"
        rows = tape.gradient(y, copies, output_gradients=tensor(units.reshape(y.shape), dtype_name(y)))
        jac = to_numpy(rows).reshape(batch, size, -1)
    jac = jac.astype(np.float64)
    assert jac.shape == (batch, size, size), f"not a square Jacobian: {y.shape}"
    sign, log_det = np.linalg.slogdet(jac)
    assert np.all(sign != 0), "singular Jacobian"
    return log_det


def value_and_gradients(loss_fn, variables, *args, compile: bool = False):
    """The scalar ``loss_fn(*args)`` and its gradients with respect to ``variables``.

    On TensorFlow this is a ``GradientTape`` (inside ``tf.function`` when ``compile``).
    On JAX the loss becomes a pure function of the variables' values through
    ``keras.StatelessScope`` and is differentiated with ``jax.value_and_grad``
    (under ``jax.jit`` when ``compile``).

    Returns:
        ``(loss, grads)`` as NumPy values, ``grads`` in the order of ``variables``.
    """
    variables = list(variables)
    if BACKEND == "jax":
        import jax

        def pure(values, *inputs):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return loss_fn(*inputs)

        step = jax.value_and_grad(pure)
        if compile:
            step = jax.jit(step)
        loss, grads = step([v.value for v in variables], *args)
    else:
        import tensorflow as tf

        def step(*inputs):
            with tf.GradientTape() as tape:
                loss = loss_fn(*inputs)
            return loss, tape.gradient(loss, variables)

        if compile:
            step = tf.function(step)
        loss, grads = step(*args)
    return to_numpy(loss), [None if g is None else to_numpy(g) for g in grads]


# Error records -----------------------------------------------------------------------
def record_error(kind: str, error: float, dtype="float64") -> float:
    """Keeps the largest ``error`` seen per ``kind`` ("round-trip", "log-det") and dtype."""
    key = (kind, keras.backend.standardize_dtype(dtype))
    error = float(error)
    if math.isnan(error):
        error = math.inf
    _MAX_ERRORS[key] = max(_MAX_ERRORS.get(key, 0.0), error)
    return error


def assert_close(actual, expected, *, atol: float, rtol: float = 0.0, kind: str | None = None, dtype="float64"):
    """Asserts ``actual`` equals ``expected`` within tolerance, everything finite.

    With ``kind`` the largest absolute difference is recorded for the summary.
    """
    actual = to_numpy(actual).astype(np.float64)
    expected = to_numpy(expected).astype(np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual)), "non-finite values"
    assert np.all(np.isfinite(expected)), "non-finite expected values"
    error = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    if kind is not None:
        record_error(kind, error, dtype)
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol)
    return error


def error_summary() -> str | None:
    """One line with the largest round-trip and log-det errors, or ``None`` if none."""
    if not _MAX_ERRORS:
        return None

    def part(kind):
        found = sorted((dtype, err) for (k, dtype), err in _MAX_ERRORS.items() if k == kind)
        if not found:
            return "n/a"
        return ", ".join(f"{err:.3g} ({dtype})" for dtype, err in found)

    return f"max round-trip error: {part('round-trip')}; max log-det error: {part('log-det')} [backend {BACKEND}]"


# Bijector checks ---------------------------------------------------------------------
def check_round_trips(bijector, x, y, *, atol: float, event_ndims: int = 3, dtype="float64", kwargs=None):
    """Checks ``x -> y -> x``, ``y -> x -> y`` and ``fldj(x) == -ildj(forward(x))``.

    Inputs are recomputed (``fresh``) before each reverse call, so a cached value cannot
    stand in for a wrong inverse or forward.

    Args:
        bijector: the bijector under test.
        x: a point in the forward domain (latent side).
        y: a point in the inverse domain (data side).
        atol: tolerance for the round trips and the log-det identity.
        kwargs: keyword arguments of every call (e.g. ``{"training": True}``).
    """
    kw = dict(kwargs or {})
    # x -> y -> x
    fy = bijector.forward(x, **kw)
    x_back = bijector.inverse(fresh(fy), **kw)
    assert_close(x_back, x, atol=atol, kind="round-trip", dtype=dtype)
    fldj = bijector.forward_log_det_jacobian(x, event_ndims=event_ndims, **kw)
    ildj = bijector.inverse_log_det_jacobian(fresh(fy), event_ndims=event_ndims, **kw)
    assert_close(fldj, -to_numpy(ildj), atol=atol, kind="log-det", dtype=dtype)

    # y -> x -> y
    iy = bijector.inverse(y, **kw)
    y_back = bijector.forward(fresh(iy), **kw)
    assert_close(y_back, y, atol=atol, kind="round-trip", dtype=dtype)
    ildj = bijector.inverse_log_det_jacobian(y, event_ndims=event_ndims, **kw)
    fldj = bijector.forward_log_det_jacobian(fresh(iy), event_ndims=event_ndims, **kw)
    assert_close(ildj, -to_numpy(fldj), atol=atol, kind="log-det", dtype=dtype)
    for value in (fy, iy, fldj, ildj):
        assert np.all(np.isfinite(to_numpy(value)))


#: Keyword arguments of a bijector's methods that may hold one row per example of the batch.
PER_EXAMPLE_KWARGS = ("conditional_input",)


def check_log_det(
    bijector,
    x,
    y,
    *,
    atol: float,
    event_ndims: int = 3,
    directions=("forward", "inverse"),
    kwargs=None,
    jacobian_kwargs=None,
):
    """Checks analytic log-dets against autodiff Jacobians (use float64 inputs).

    ``forward_log_det_jacobian(x)`` against ``slogdet(d forward / d x)`` and
    ``inverse_log_det_jacobian(y)`` against ``slogdet(d inverse / d y)``, per example.

    Args:
        directions: which of ``"forward"`` and ``"inverse"`` to check.
        kwargs: keyword arguments of the log-det calls.
        jacobian_kwargs: keyword arguments of the differentiated ``forward``/``inverse``
            (default: ``kwargs``). Training-mode batch norm couples the examples of a
            batch through its statistics; its log-det is that of the bijection at the
            batch's statistics, which the inference-mode map computes once the moving
            averages hold them.

    Returns:
        The analytic log-dets checked, as NumPy arrays, keyed by direction.
    """
    kw = dict(kwargs or {})
    jac_kw = kw if jacobian_kwargs is None else dict(jacobian_kwargs)
    checked = {}
    for direction, point in (("forward", x), ("inverse", y)):
        if direction not in directions:
            continue
        assert point is not None, f"no point given for the {direction} direction"
        transform = getattr(bijector, direction)
        log_det = getattr(bijector, f"{direction}_log_det_jacobian")
        # A conditional input with a row per example ([B, K]; a [K] vector is broadcast to
        # every example) is repeated with the example's copies in the Jacobian's batch.
        batch = int(point.shape[0])
        per_example = [
            k for k in PER_EXAMPLE_KWARGS if k in jac_kw and len(jac_kw[k].shape) >= 2 and jac_kw[k].shape[0] == batch
        ]
        others = {k: v for k, v in jac_kw.items() if k not in per_example}

        def mapped(t, *values, transform=transform, per_example=per_example, others=others):
            return transform(t, **others, **dict(zip(per_example, values)))

        expected = jacobian_log_det(mapped, fresh(point), *(jac_kw[k] for k in per_example))
        actual = log_det(fresh(point), event_ndims=event_ndims, **kw)
        assert tuple(actual.shape) == (int(point.shape[0]),)
        assert_close(actual, expected, atol=atol, rtol=0.0, kind="log-det")
        checked[direction] = to_numpy(actual)
    return checked


def count_calls(monkeypatch, obj, *names: str) -> list[int]:
    """Counts calls of the methods ``names`` of one object; returns a one-item counter.

    The methods are replaced on the instance (restored by ``monkeypatch``), so calls
    that TFP or a containing bijector make are counted too.
    """
    counter = [0]
    for name in names:
        original = getattr(obj, name)

        def counted(*args, _original=original, **kwargs):
            counter[0] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(obj, name, counted)
    return counter


# Flows -----------------------------------------------------------------------------------
# Small networks: one residual block of four filters.
SMALL = {"num_filters": 4, "num_blocks": 1}


def make_flow(num_scales=2, batch_norm=True, *, image=(8, 8, 2), dtype="float64", seed=None, stddev=0.2, **kwargs):
    """A built ``MultiScaleFlow`` with small networks; ``seed`` randomises every weight."""
    from tfp_realnvp import MultiScaleFlow

    kwargs = {**SMALL, **kwargs}
    flow = MultiScaleFlow(image_shape=image, num_scales=num_scales, batch_norm=batch_norm, dtype=dtype, **kwargs)
    if seed is not None:
        randomize(flow.variables, seed, stddev=stddev)
    return flow


def make_dist(bijector, event_shape=None, dtype="float64"):
    """``TransformedDistribution`` of a standard normal over ``event_shape`` through ``bijector``.

    ``event_shape`` defaults to the flow's image shape.
    """
    from tfp_realnvp import tfd

    event_shape = list(bijector.image_shape if event_shape is None else event_shape)
    zero, one = np.array(0.0, dtype), np.array(1.0, dtype)
    return tfd.TransformedDistribution(tfd.Sample(tfd.Normal(zero, one), event_shape), bijector)


def latent_points(flow, rng: np.random.Generator, batch: int = 2, dtype="float64"):
    """Latents whose images lie inside ``[0, 256)`` (the forward map also reaches beyond)."""
    image = tuple(flow.image_shape)
    z = to_numpy(flow.inverse(tensor(pixels(rng, (batch,) + image), dtype)))
    return tensor(z + 0.01 * rng.normal(size=z.shape), dtype)


def negative_log_prob(dist, **log_prob_kwargs):
    """The mean negative log-likelihood of a batch as a function of the batch."""
    import keras

    def loss(x):
        return -keras.ops.sum(dist.log_prob(x, **log_prob_kwargs)) / x.shape[0]

    return loss


def is_tracer(value) -> bool:
    """True for a JAX tracer (always False on TensorFlow)."""
    if BACKEND != "jax":
        return False
    import jax

    return isinstance(value, jax.core.Tracer)


def variable_values(variables) -> list[np.ndarray]:
    """NumPy copies of the variables' current values."""
    return [to_numpy(v) for v in variables]
