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

The walk mirrors ``one_pass.transform``: ``OnePassBijector`` steps answer through
``_transform_recorded``/``_reverse``, ``tfb.Chain`` and ``tfb.Invert`` are walked, and
any other bijector is rebuilt by its own inverse and pulled back by autodiff.
"""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.bijectors.one_pass import (
    CHAIN_TYPES,
    INVERT_TYPES,
    OnePassBijector,
    record_step,
    reverse_step,
    transform,
)
from tfp_realnvp.bijectors.recompute import assign_updates
from tfp_realnvp.internal.gradients import after, custom_vjp, read_values, vjp
from tfp_realnvp.internal.stateless import stateless_call


def record_transform(bijector, x, *, inverse: bool, training: bool, conditional_input=None):
    """``(value, log_det, record)``: ``transform`` plus what ``reverse_transform`` needs."""
    if isinstance(bijector, OnePassBijector):
        return record_step(bijector, x, inverse=inverse, training=training, conditional_input=conditional_input)
    if isinstance(bijector, CHAIN_TYPES):
        steps = bijector.bijectors if inverse else list(reversed(bijector.bijectors))
        total, records = None, []
        for step in steps:
            x, log_det, record = record_transform(
                step, x, inverse=inverse, training=training, conditional_input=conditional_input
            )
            total = log_det if total is None else total + log_det
            records.append(record)
        return x, total, records
    if isinstance(bijector, INVERT_TYPES):
        return record_transform(
            bijector.bijector, x, inverse=not inverse, training=training, conditional_input=conditional_input
        )
    y, log_det = transform(bijector, x, inverse=inverse, training=training)
    return y, log_det, None


def reverse_transform(
    bijector, y, g_y, g_log_det, record, *, inverse: bool, training: bool, grads: dict, conditional_input=None
):
    """Rebuilds the input of ``bijector`` from its output ``y`` and pulls back cotangents.

    Args:
        bijector: a step, ``tfb.Chain`` or ``tfb.Invert``, as given to ``record_transform``.
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
    """
    if isinstance(bijector, OnePassBijector):
        # Each step is rebuilt only once the cotangent of its output exists, so the
        # compiler cannot rebuild every input up front and keep them all.
        (y,) = after((y,), g_y)
        return reverse_step(
            bijector,
            y,
            g_y,
            g_log_det,
            record,
            inverse=inverse,
            training=training,
            grads=grads,
            conditional_input=conditional_input,
        )
    if isinstance(bijector, CHAIN_TYPES):
        steps = bijector.bijectors if inverse else list(reversed(bijector.bijectors))
        for step, step_record in reversed(list(zip(steps, record))):
            y, g_y = reverse_transform(
                step,
                y,
                g_y,
                g_log_det,
                step_record,
                inverse=inverse,
                training=training,
                grads=grads,
                conditional_input=conditional_input,
            )
        return y, g_y
    if isinstance(bijector, INVERT_TYPES):
        return reverse_transform(
            bijector.bijector,
            y,
            g_y,
            g_log_det,
            record,
            inverse=not inverse,
            training=training,
            grads=grads,
            conditional_input=conditional_input,
        )
    # Fresh tensors: TFP's bijector cache would answer with the tensors of the forward
    # pass, which the pull-back's tape did not record.
    x, _ = transform(bijector, ops.copy(y), inverse=not inverse, training=training)
    _, pull = vjp(lambda x: transform(bijector, ops.copy(x), inverse=inverse, training=training), x)
    (g_x,) = pull((g_y, g_log_det))
    return x, g_x


#: Where ``grads`` collects the cotangent of the context of conditional steps.
CONTEXT_KEY = "conditional_input"


def add_gradients(grads: dict, variables, values) -> None:
    """Adds ``values`` to the gradients of ``variables`` in ``grads`` (``CONTEXT_KEY``
    stands for the context)."""
    for variable, value in zip(variables, values):
        key = variable if isinstance(variable, str) else id(variable)
        grads[key] = value if key not in grads else grads[key] + value


def pull_back_step(step: OnePassBijector, fn, x, cotangents, *, grads: dict, conditional_input=None):
    """Cotangent of ``x`` for ``fn(x, **context)``, a computation of ``step``; adds the
    gradients of its weights (and of the context, under ``"conditional_input"``).

    ``fn`` runs as a pure function of the step's weights at their current values
    (those of the enclosing stateless scope); state it assigns is dropped, so a
    recomputed training-mode pass never updates moving averages a second time.
    """
    variables, state_variables = step.trainable_variables, step.non_trainable_variables
    params, state = read_values(variables), read_values(state_variables)
    if conditional_input is None:

        def pure(params, x):
            return stateless_call(variables, state_variables, params, state, fn, x)[0]

        _, pull = vjp(pure, params, x)
        g_params, g_x = pull(cotangents)
    else:

        def pure(params, x, context):
            return stateless_call(variables, state_variables, params, state, fn, x, conditional_input=context)[0]

        _, pull = vjp(pure, params, x, conditional_input)
        g_params, g_x, g_context = pull(cotangents)
        add_gradients(grads, [CONTEXT_KEY], [g_context])
    add_gradients(grads, variables, g_params)
    return g_x


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
