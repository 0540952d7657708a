"""Backend-neutral pieces for hand-written gradients: raw weight values, VJPs, custom VJPs.

The recomputing training modes (``MultiScaleFlow(recompute=...)``) write their own
backward passes. They need three things that ``keras.ops`` does not offer in one form
on every backend: the stored value of a weight (not an autocast copy), the
vector-Jacobian product of a function, and a function whose backward pass is
supplied by hand and keeps only chosen residuals. On JAX these are ``jax.vjp`` and
``jax.custom_vjp``; on TensorFlow a ``tf.GradientTape`` and ``tf.custom_gradient``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import ops

from tfp_realnvp.internal.backend import backend_name, no_autocast


def read_values(variables: Sequence) -> list:
    """The current values of ``variables`` in their own dtype.

    Inside a layer's call under a mixed policy Keras casts float weights to the
    compute dtype when they are read; a hand-written backward pass must see (and
    return gradients for) the stored float32 values, so autocasting is off here.
    Inside a ``keras.StatelessScope`` the values are the scope's.
    """
    with no_autocast():
        return [ops.convert_to_tensor(v.value) for v in variables]


def _zeros_for(value, cotangent):
    return ops.zeros_like(value) if cotangent is None else cotangent


def vjp(fn: Callable, *primals):
    """``(fn(*primals), pullback)``; ``pullback(cotangents)`` returns one cotangent per primal.

    ``fn`` returns a tensor or a (nested) tuple/list of tensors; ``cotangents`` has
    that structure (``None`` entries count as zeros). A primal may itself be a list
    of tensors; its cotangent is then a list. Primals ``fn`` does not depend on get
    zero cotangents.
    """
    if backend_name() == "jax":
        import jax

        out, pull = jax.vjp(fn, *primals)

        def pullback(cotangents):
            cotangents = (
                keras.tree.map_structure_up_to(out, _zeros_for, out, cotangents) if cotangents is not None else None
            )
            return pull(cotangents)

        return out, pullback

    import tensorflow as tf

    flat_primals = [ops.convert_to_tensor(p) for p in keras.tree.flatten(primals)]
    structured = keras.tree.pack_sequence_as(primals, flat_primals)
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        for p in flat_primals:
            tape.watch(p)
        out = fn(*structured)

    def pullback(cotangents):
        flat_out = keras.tree.flatten(out)
        flat_ct = keras.tree.flatten(keras.tree.map_structure_up_to(out, _zeros_for, out, cotangents))
        grads = tape.gradient(
            flat_out, flat_primals, output_gradients=flat_ct, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return tuple(keras.tree.pack_sequence_as(primals, grads))

    return out, pullback


def after(values, dependency):
    """``values`` (a tuple of tensors), computed only once ``dependency`` exists.

    A backward pass that recomputes from stored inputs calls this on those inputs and
    the incoming cotangent, so that the compiler can neither merge the recomputation
    with the forward pass (which keeps the forward activations alive) nor run it before
    the cotangent it serves. Each float value gets ``+ 0 * d``, ``d`` one element of the
    dependency: XLA's CPU pipeline drops optimization barriers before common-subexpression
    elimination, but cannot drop this data dependence (the sum is exact, and a NaN or
    infinite ``d`` only reaches gradients that are already NaN or infinite). On JAX
    the values also pass a ``jax.lax.optimization_barrier``.
    """
    first = ops.reshape(dependency, (-1,))[:1]
    tie = ops.sum(ops.cast(first, "float32")) * 0.0

    def tied(value):
        dtype = keras.backend.standardize_dtype(value.dtype)
        return value + ops.cast(tie, dtype) if "float" in dtype else value

    values = tuple(tied(v) for v in values)
    if backend_name() == "jax":
        import jax

        values = jax.lax.optimization_barrier((values, dependency))[0]
    return values


def custom_vjp(fwd: Callable, bwd: Callable) -> Callable:
    """A function ``f(*args)`` with the value of ``fwd`` and the backward pass ``bwd``.

    Args:
        fwd: ``fwd(*args) -> (outputs, residuals)``; ``args`` are tensors or lists of
            tensors, ``outputs`` a tuple of tensors or lists of tensors. Only
            ``residuals`` (and ``args``, if ``bwd`` uses them through the residuals)
            are kept for the backward pass.
        bwd: ``bwd(residuals, output_cotangents) -> input_cotangents``, one entry per
            argument of ``f`` with that argument's structure.

    Returns:
        ``f``, differentiable by ``jax.grad``/``jax.vjp`` or ``tf.GradientTape``.
    """
    if backend_name() == "jax":
        import jax

        @jax.custom_vjp
        def f(*args):
            return fwd(*args)[0]

        def f_fwd(*args):
            return fwd(*args)

        def f_bwd(residuals, cotangents):
            return tuple(bwd(residuals, cotangents))

        f.defvjp(f_fwd, f_bwd)
        return f

    import tensorflow as tf

    def f(*args):
        flat_args = [ops.convert_to_tensor(a) for a in keras.tree.flatten(args)]
        structure = []

        @tf.custom_gradient
        def inner(*flat):
            structured = keras.tree.pack_sequence_as(args, list(flat))
            outputs, residuals = fwd(*structured)
            structure.append(outputs)
            flat_outputs = keras.tree.flatten(outputs)

            def grad(*upstream, variables=None):
                if variables:
                    names = sorted(v.name for v in variables)
                    raise ValueError(
                        f"a hand-written backward pass read variables that were not passed to it as values: {names}."
                    )
                upstream = [_zeros_for(o, u) for o, u in zip(flat_outputs, upstream)]
                cotangents = bwd(residuals, keras.tree.pack_sequence_as(outputs, upstream))
                return keras.tree.flatten(keras.tree.map_structure_up_to(args, _zeros_for, args, tuple(cotangents)))

            return flat_outputs, grad

        flat_outputs = inner(*flat_args)
        if not isinstance(flat_outputs, (list, tuple)):
            flat_outputs = [flat_outputs]
        return keras.tree.pack_sequence_as(structure[0], list(flat_outputs))

    return f
