"""The keyword arguments of a flow step's call: ``training`` and ``conditional_input``.

TFP passes a bijector call's keyword arguments (``bijector_kwargs`` of a distribution)
to ``_forward``/``_inverse`` and keys its cache by them; a ``OnePassBijector`` takes
the batch-norm mode ``training`` and, when conditional, the context
``conditional_input``.
"""

from __future__ import annotations

import numpy as np


def check_training(training) -> bool:
    """``training`` as a Python bool, or ``ValueError`` naming what was received.

    The batch-norm mode must be known when a function is traced (it selects which
    statistics the graph computes), so tensors are refused.
    """
    if isinstance(training, (bool, np.bool_)):
        return bool(training)
    raise ValueError(
        "training must be a Python bool (it selects batch statistics or moving averages "
        f"when the flow is traced); received {training!r} of type {type(training).__name__}."
    )


def same_kwargs(a, b) -> bool:
    """Whether two keyword-argument dicts hold the same keys and the same values.

    Tensors (a context) compare by identity, as TFP's cache keys them; ``==`` on two
    tensors would compare them element by element.
    """
    if not isinstance(a, dict) or not isinstance(b, dict) or set(a) != set(b):
        return False
    for key in a:
        x, y = a[key], b[key]
        if x is y:
            continue
        scalars = (bool, int, float, str, np.generic, type(None))
        if isinstance(x, scalars) and isinstance(y, scalars) and x == y:
            continue
        return False
    return True


CONDITIONAL_INPUT = "conditional_input"
"""Name of the keyword argument that carries the context of a conditional bijector
(the name TFP's own conditional bijectors use)."""


def step_context(step, conditional_input) -> dict:
    """The context keyword a step's ``_transform`` takes: ``{"conditional_input": c}`` for
    a conditional step, ``{}`` for any other (which receives no context).

    Raises:
        ValueError: for a conditional step and no context.
    """
    if not getattr(step, "conditional", False):
        return {}
    if conditional_input is None:
        raise ValueError(f"{step.name} is conditional and needs conditional_input; received None.")
    return {"conditional_input": conditional_input}


def call_mode(kwargs: dict, *, name: str, conditional: bool) -> tuple[bool, object]:
    """``(training, conditional_input)`` from the keyword arguments of a step's call.

    Args:
        kwargs: the keyword arguments, as TFP passed them to ``_forward``/``_inverse``.
        name: the step's name, for the messages.
        conditional: whether the step takes (and needs) ``conditional_input``.

    Raises:
        ValueError: for an unknown keyword, a context given to an unconditional
            step, or none given to a conditional one, naming what was received.
    """
    allowed = {"training", CONDITIONAL_INPUT} if conditional else {"training"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        if CONDITIONAL_INPUT in unknown:
            raise ValueError(
                f"{name} is not conditional (build it with context_dim to condition it) and takes "
                f"no conditional_input; received keyword arguments {sorted(kwargs)}."
            )
        raise ValueError(
            f"{name} takes the keyword argument{'s' if len(allowed) > 1 else ''} "
            f"{' and '.join(repr(k) for k in sorted(allowed, reverse=True))} only; received {unknown}."
        )
    context = kwargs.get(CONDITIONAL_INPUT)
    if conditional and context is None:
        raise ValueError(
            f"{name} is conditional and needs conditional_input (a context [..., K]); "
            f"received keyword arguments {sorted(kwargs)}."
        )
    return check_training(kwargs.get("training", False)), context
