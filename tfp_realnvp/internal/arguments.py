"""Checks of configuration arguments, each with one message form.

Every check raises ``ValueError`` that names the argument and the value received::

    batch_size must be an integer >= 1; received 0.
    temperature must be a finite number > 0; received -1.0.

Integers are Python or NumPy integers (``bool`` is refused: ``True`` is not a count);
integral floats such as ``8.0`` are accepted where a config round-trips through JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (Python, NumPy, or an integral float), not a bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def check_int(value: Any, *, name: str, low: int = 1, high: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` when it is an integer in ``[low, high]``.

    Args:
        value: the value to check.
        name: the argument's name, for the message.
        low: the smallest accepted value (1: a positive count; 0: a non-negative one).
        high: the largest accepted value, or ``None`` for no bound.
        allow_none: let ``None`` through (returned as ``None``).

    Raises:
        ValueError: ``"{name} must be an integer >= {low}; received {value!r}."`` (with
            ``and <= {high}`` when bounded).
    """
    if value is None and allow_none:
        return None
    if not is_integer(value) or int(value) < low or (high is not None and int(value) > high):
        bound = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"{name} must be an integer {bound}; received {value!r}.")
    return int(value)


def check_number(
    value: Any,
    *,
    name: str,
    low: float | None = None,
    high: float | None = None,
    strict: bool = True,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a ``float`` when it is a finite real number within the bounds.

    Args:
        value: the value to check.
        name: the argument's name, for the message.
        low: the lower bound, or ``None`` for none.
        high: the upper bound, or ``None`` for none.
        strict: whether the bounds themselves are excluded (``> low``) or allowed (``>= low``).
        allow_none: let ``None`` through (returned as ``None``).

    Raises:
        ValueError: ``"{name} must be a finite number > {low}; received {value!r}."``
            (the bounds as given).
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = ok and math.isfinite(float(value))
    if ok and low is not None:
        ok = float(value) > low if strict else float(value) >= low
    if ok and high is not None:
        ok = float(value) < high if strict else float(value) <= high
    if not ok:
        lower, upper = (">", "<") if strict else (">=", "<=")
        bounds = [f"{lower} {low}"] * (low is not None) + [f"{upper} {high}"] * (high is not None)
        suffix = (" " + " and ".join(bounds)) if bounds else ""
        raise ValueError(f"{name} must be a finite number{suffix}; received {value!r}.")
    return float(value)
