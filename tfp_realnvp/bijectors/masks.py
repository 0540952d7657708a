"""Binary masks that split an ``[H, W, C]`` event into the fixed and the updated part."""

from __future__ import annotations

import numpy as np

MASK_TYPES = ("checkerboard", "channel")


def checkerboard(height: int, width: int, *, parity: int) -> np.ndarray:
    """An ``[H, W, 1]`` float mask, 1 where ``(i + j) % 2 == parity`` (the fixed part)."""
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1; received {parity!r}.")
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return ((i + j) % 2 == parity).astype(np.float32)[..., None]


def check_mask_type(mask_type: str) -> str:
    """Returns ``mask_type`` or raises ``ValueError`` naming the received value."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}; received {mask_type!r}.")
    return mask_type
