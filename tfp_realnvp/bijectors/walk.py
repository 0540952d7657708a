"""The walk over a composite bijector: ``tfb.Chain`` and ``tfb.Invert`` looked through.

A flow is a tree of ``tfb.Chain`` and ``tfb.Invert`` whose leaves are the steps that
compute (a ``OnePassBijector``, or any other ``tfb.Bijector``). ``leaves`` lists them
with the direction each is applied in; every function that runs, records, rebuilds,
checks or collects the steps of a flow (``one_pass.transform``,
``one_pass.check_nested_event_shape``, ``one_pass.one_pass_steps``,
``reversible.record_transform``, ``reversible.reverse_transform``) walks it, and no
other code looks inside a ``Chain`` or an ``Invert``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from tfp_realnvp.internal.backend import CHAIN_TYPES, INVERT_TYPES

#: The orders ``leaves`` lists the steps in.
ORDERS = ("applied", "declared")


class Leaf(NamedTuple):
    """A step of a composite bijector and the direction a call applies it in."""

    bijector: object
    inverse: bool


def leaves(bijector, *, inverse: bool, order: str = "applied") -> Iterator[Leaf]:
    """The steps of ``bijector``, each with the direction it is applied in when ``bijector``
    is applied with ``inverse``. A step is any bijector that is neither a ``tfb.Chain``
    nor a ``tfb.Invert`` (which are looked through).

    ``tfb.Invert(b)`` applies ``b`` in the opposite direction. ``tfb.Chain([b_1, ..., b_n])``
    applies ``b_n`` first in ``forward`` and ``b_1`` first in ``inverse``.

    Args:
        bijector: any ``tfb.Bijector``; a step is its own only leaf.
        inverse: the direction ``bijector`` is applied in.
        order: ``"applied"``: the order a call applies the steps in (an input passes
            through them one after the other); ``"declared"``: the order they are
            written in, each chain's bijectors as listed.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}; received {order!r}.")
    if isinstance(bijector, CHAIN_TYPES):
        steps = bijector.bijectors if inverse or order == "declared" else list(reversed(bijector.bijectors))
        for step in steps:
            yield from leaves(step, inverse=inverse, order=order)
    elif isinstance(bijector, INVERT_TYPES):
        yield from leaves(bijector.bijector, inverse=not inverse, order=order)
    else:
        yield Leaf(bijector, inverse)
