"""Pure-function calls over Keras variables (for ``jax.jit``, ``jax.grad`` and optax)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras


def stateless_call(
    trainable_variables: Sequence,
    non_trainable_variables: Sequence,
    trainable_values: Sequence,
    non_trainable_values: Sequence,
    fn: Callable,
    *args,
    **kwargs,
):
    """Runs ``fn(*args, **kwargs)`` with the variables reading the given values.

    Inside a ``keras.StatelessScope`` every read of a listed variable returns the given
    value and every assignment is recorded instead of written, so the call is a pure
    function of the values: safe under ``jax.jit`` and differentiable by ``jax.grad``
    with respect to ``trainable_values``.

    Args:
        trainable_variables: the variables that ``trainable_values`` stand for.
        non_trainable_variables: the variables that ``non_trainable_values`` stand for
            (state that ``fn`` may update, such as batch-norm statistics).
        trainable_values: arrays, one per trainable variable, same shapes.
        non_trainable_values: arrays, one per non-trainable variable.
        fn: the function to run.
        *args: positional arguments of ``fn``.
        **kwargs: keyword arguments of ``fn``.

    Returns:
        ``(output, new_non_trainable_values)``: ``fn``'s result, and for each
        non-trainable variable the value ``fn`` assigned to it, or its input value.

    Raises:
        ValueError: when a value list does not match its variable list in length.
    """
    for label, variables, values in (
        ("trainable", trainable_variables, trainable_values),
        ("non-trainable", non_trainable_variables, non_trainable_values),
    ):
        if len(variables) != len(values):
            raise ValueError(f"expected {len(variables)} {label} values (one per variable); received {len(values)}.")
    mapping = list(zip(trainable_variables, trainable_values)) + list(
        zip(non_trainable_variables, non_trainable_values)
    )
    with keras.StatelessScope(state_mapping=mapping) as scope:
        output = fn(*args, **kwargs)
        new_state = []
        for variable, value in zip(non_trainable_variables, non_trainable_values):
            updated = scope.get_current_value(variable)
            new_state.append(value if updated is None else updated)
    return output, new_state
