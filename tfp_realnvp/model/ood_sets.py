"""Out-of-distribution image sets made from nothing but the in-distribution images.

Each set has the shape of the images it is made from, uint8 ``[N, H, W, C]``:

* ``"noise"``: every pixel uniform on ``{0, ..., 255}``;
* ``"constant"``: each image one uniform gray level (per channel);
* ``"vflip"``: the images upside down;
* ``"inverted"``: ``255 - x``.
"""

from __future__ import annotations

import numpy as np

#: The names ``synthetic_ood_images`` makes.
SYNTHETIC_OOD_SETS = ("noise", "constant", "vflip", "inverted")


def synthetic_ood_images(name: str, images, *, seed: int = 0) -> np.ndarray:
    """The synthetic set ``name`` (one of ``SYNTHETIC_OOD_SETS``) made from ``images``.

    Args:
        name: which set.
        images: uint8 ``[N, H, W, C]``, the in-distribution images it is made from
            (``noise`` and ``constant`` take only their shape).
        seed: seed of ``noise`` and ``constant``.

    Returns:
        uint8 ``[N, H, W, C]``.

    Raises:
        ValueError: for another name, naming it.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape [N, H, W, C]; received shape {list(images.shape)}.")
    rng = np.random.default_rng(seed)
    if name == "noise":
        return rng.integers(0, 256, images.shape, dtype=np.uint8)
    if name == "constant":
        levels = rng.integers(0, 256, (len(images), 1, 1, images.shape[-1]), dtype=np.uint8)
        return np.ascontiguousarray(np.broadcast_to(levels, images.shape))
    if name == "vflip":
        return np.ascontiguousarray(images[:, ::-1]).astype(np.uint8)
    if name == "inverted":
        return (255 - images.astype(np.int64)).astype(np.uint8)
    raise ValueError(f"name must be one of {list(SYNTHETIC_OOD_SETS)}; received {name!r}.")
