"""Invertible recomputation: a backward pass that rebuilds every step's input from its output.

For a chain ``z = f_K(... f_1(x))`` with log-det ``L = sum_k l_k(x_{k-1})``, the
gradient of a loss ``E(z, L)`` needs, for step ``k``, its input ``x_{k-1}`` and the
cotangents ``(dE/dx_k, dE/dL)``. Autodiff stores every ``x_k`` and every activation
inside the steps. Here the forward pass keeps only ``z`` (plus the per-channel
statistics of the training-mode batch-norm steps), and the backward pass runs
``k = K, ..., 1``:

1. rebuild ``x_{k-1} = f_k^{-1}(x_k)`` (exact up to rounding);
2. pull ``(dE/dx_k, dE/dL)`` back through ``f_k`` alone at ``x_{k-1}``, giving
   ``dE/dx_{k-1}`` and the gradients of ``f_k``'s weights.

Peak memory is that of one step's backward pass, whatever the depth. A coupling
rebuilds its input and pulls back with one conditioner pass: its fixed half is the
same on both sides, so the network evaluated for the inverse is the one whose
gradient is needed (``AffineCoupling._reverse``).

The walk is ``one_pass.transform``'s (``walk.leaves``): ``OnePassBijector`` steps
answer through ``_transform_recorded``/``_reverse``, and any other bijector is rebuilt
by its own inverse and pulled back by autodiff. The steps' pull-back helpers live in
``bijectors.pull_back``.
"""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.bijectors.one_pass import OnePassBijector, apply_leaf, record_step, reverse_step
from tfp_realnvp.bijectors.pull_back import CONTEXT_KEY
from tfp_realnvp.bijectors.recompute import assign_updates
from tfp_realnvp.bijectors.walk import Leaf, leaves
from tfp_realnvp.internal.gradients import after, custom_vjp, read_values, vjp
from tfp_realnvp.internal.stateless import stateless_call


def record_transform(bijector, x, *, inverse: bool, training: bool, conditional_input=None):
    """``(value, log_det, record)``: ``transform`` plus what ``reverse_transform`` needs.

    The record is a list with one entry per step of the walk (``walk.leaves``), in the
    order the steps were applied: what the step's ``_transform_recorded`` returned for a
    ``OnePassBijector``, ``None`` for any other bijector.
    """
    total, records = None, []
    for leaf in leaves(bijector, inverse=inverse):
        step, step_inverse = leaf
        if isinstance(step, OnePassBijector):
            x, log_det, record = record_step(
                step, x, inverse=step_inverse, training=training, conditional_input=conditional_input
            )
        else:
            (x, log_det), record = apply_leaf(leaf, x, training=training), None
        total = log_det if total is None else total + log_det
        records.append(record)
    return x, total, records


def reverse_transform(
    bijector, y, g_y, g_log_det, record, *, inverse: bool, training: bool, grads: dict, conditional_input=None
):
    """Rebuilds the input of ``bijector`` from its output ``y`` and pulls back cotangents.

    The steps are walked as ``record_transform`` walked them, from the last applied to
    the first.

    Args:
        bijector: the bijector given to ``record_transform``.
        y: its output.
        g_y: cotangent of ``y``.
        g_log_det: cotangent of the total log-det (every step's log-det adds to it).
        record: what ``record_transform`` returned for this bijector.
        inverse: the direction it was applied in.
        training: the batch-norm mode it was applied in.
        grads: ``id(variable) -> gradient``; the gradients of the step's weights are
            added to it, and those of the context under ``"conditional_input"``.
        conditional_input: the context of conditional steps, or ``None``.

    Returns:
        ``(x, g_x)``: the rebuilt input and its cotangent.

    Raises:
        ValueError: when ``record`` does not hold one entry per step of ``bijector``.
    """
    steps = list(leaves(bijector, inverse=inverse))
    if not isinstance(record, list) or len(record) != len(steps):
        received = f"{len(record)} entries" if isinstance(record, list) else f"a {type(record).__name__}"
        raise ValueError(
            "reverse_transform needs the record that record_transform returned for this bijector, "
            f"one entry per step ({len(steps)}); received {received}."
        )
    for leaf, step_record in reversed(list(zip(steps, record))):
        y, g_y = reverse_leaf(
            leaf, y, g_y, g_log_det, step_record, training=training, grads=grads, conditional_input=conditional_input
        )
    return y, g_y


def reverse_leaf(leaf: Leaf, y, g_y, g_log_det, record, *, training: bool, grads: dict, conditional_input=None):
    """``(x, g_x)`` for one step of the walk: see ``reverse_transform``."""
    step, inverse = leaf
    if isinstance(step, OnePassBijector):
        # Each step is rebuilt only once the cotangent of its output exists, so the
        # compiler cannot rebuild every input up front and keep them all.
        (y,) = after((y,), g_y)
        return reverse_step(
            step,
            y,
            g_y,
            g_log_det,
            record,
            inverse=inverse,
            training=training,
            grads=grads,
            conditional_input=conditional_input,
        )
    # Fresh tensors: TFP's bijector cache would answer with the tensors of the forward
    # pass, which the pull-back's tape did not record.
    x, _ = apply_leaf(Leaf(step, not inverse), ops.copy(y), training=training)

    def pulled(x):
        value, log_det = apply_leaf(leaf, ops.copy(x), training=training)
        # TFP gives the log-det of a constant Jacobian as a scalar; the cotangent is per example.
        return value, ops.broadcast_to(log_det, ops.shape(g_log_det))

    _, pull = vjp(pulled, x)
    (g_x,) = pull((g_y, g_log_det))
    return x, g_x


def reversible_transform(bijector: OnePassBijector, x, *, inverse: bool, training: bool, conditional_input=None):
    """``transform(bijector, x)`` whose backward pass rebuilds inputs instead of storing them.

    The forward computation is the usual one; its gradient with respect to ``x``, the
    context and every trainable weight of ``bijector`` equals autodiff's (to rounding).
    The batch-norm statistics of a training-mode call are written once, after the pass.

    Returns:
        ``(value, log_det)``.
    """
    variables, state_variables = bijector.trainable_variables, bijector.non_trainable_variables
    params, state = read_values(variables), read_values(state_variables)
    conditional = conditional_input is not None

    def fwd(x, params, state, *context):
        def run(x):
            return record_transform(
                bijector, x, inverse=inverse, training=training, conditional_input=context[0] if context else None
            )

        (y, log_det, record), new_state = stateless_call(variables, state_variables, params, state, run, x)
        return (y, log_det, new_state), (y, params, state, record, context)

    def bwd(residuals, cotangents):
        y, params, state, record, context = residuals
        g_y, g_log_det, _ = cotangents
        grads: dict = {}
        mapping = list(zip(variables, params)) + list(zip(state_variables, state))
        with keras.StatelessScope(state_mapping=mapping):
            _, g_x = reverse_transform(
                bijector,
                y,
                g_y,
                g_log_det,
                record,
                inverse=inverse,
                training=training,
                grads=grads,
                conditional_input=context[0] if context else None,
            )
        g_params = [grads.get(id(v), ops.zeros_like(p)) for v, p in zip(variables, params)]
        g_params = [ops.cast(g, p.dtype) for g, p in zip(g_params, params)]
        out = (g_x, g_params, [ops.zeros_like(s) for s in state])
        if context:
            g_context = grads.get(CONTEXT_KEY, ops.zeros_like(context[0]))
            out += (ops.cast(g_context, context[0].dtype),)
        return out

    args = (x, params, state) + ((ops.convert_to_tensor(conditional_input),) if conditional else ())
    y, log_det, new_state = custom_vjp(fwd, bwd)(*args)
    if training:
        assign_updates(state_variables, state, new_state, what=f"{bijector.name} batch-norm moving averages")
    return y, log_det
