"""Binary masks that split an ``[H, W, C]`` event into the fixed and the updated part."""

from __future__ import annotations

import numpy as np

from tfp_realnvp.internal.arguments import check_int

MASK_TYPES = ("checkerboard", "channel")


def checkerboard(height: int, width: int, *, parity: int) -> np.ndarray:
    """An ``[H, W, 1]`` float mask, 1 where ``(i + j) % 2 == parity`` (the fixed part)."""
    parity = check_parity(parity)
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return ((i + j) % 2 == parity).astype(np.float32)[..., None]


def check_mask_type(mask_type: str) -> str:
    """Returns ``mask_type`` or raises ``ValueError`` naming the received value."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}; received {mask_type!r}.")
    return mask_type


def check_parity(parity) -> int:
    """``parity`` (which half of a mask stays fixed) as 0 or 1, else ``ValueError`` naming it."""
    return check_int(parity, name="parity", low=0, high=1)
