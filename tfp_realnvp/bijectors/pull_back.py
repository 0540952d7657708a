"""Pulling cotangents back through one step as a pure function of its weights.

The backward pass of invertible recomputation (``bijectors.reversible``) pulls the
cotangents of each step's output back through that step alone; the steps' own
``_reverse`` methods (``OnePassBijector``, ``BatchNormalization``, ``AffineCoupling``)
use the functions here, which know nothing of the steps' classes.
"""

from __future__ import annotations

from tfp_realnvp.internal.gradients import read_values, vjp
from tfp_realnvp.internal.stateless import stateless_call

#: Where ``grads`` collects the cotangent of the context of conditional steps.
CONTEXT_KEY = "conditional_input"


def add_gradients(grads: dict, variables, values) -> None:
    """Adds ``values`` to the gradients of ``variables`` in ``grads`` (``CONTEXT_KEY``
    stands for the context)."""
    for variable, value in zip(variables, values):
        key = variable if isinstance(variable, str) else id(variable)
        grads[key] = value if key not in grads else grads[key] + value


def pull_back_step(step, fn, x, cotangents, *, grads: dict, conditional_input=None):
    """Cotangent of ``x`` for ``fn(x, **context)``, a computation of ``step``; adds the
    gradients of its weights (and of the context, under ``CONTEXT_KEY``).

    ``fn`` runs as a pure function of the step's weights (its ``trainable_variables``
    and ``non_trainable_variables``) at their current values (those of the enclosing
    stateless scope); state it assigns is dropped, so a recomputed training-mode pass
    never updates moving averages a second time.
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
