"""Image grids and strips as PNG files."""

from __future__ import annotations

import math
import os

import numpy as np


def image_grid(images, *, columns: int | None = None, padding: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` uint8 images into one ``[rows*H', cols*W', C]`` image.

    Args:
        images: uint8 images; ``C`` is 1 or 3.
        columns: images per row; default ``ceil(sqrt(N))``.
        padding: pixels between tiles.
        pad_value: gray level of the padding.

    Raises:
        ValueError: for a batch that is not ``[N, H, W, 1 or 3]``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"image_grid needs a non-empty [N, H, W, 1 or 3] batch; received shape {list(images.shape)}.")
    n, h, w, c = images.shape
    columns = int(columns or math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), pad_value, np.uint8)
    for k, image in enumerate(images.astype(np.uint8)):
        r, q = divmod(k, columns)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_png(image: np.ndarray, path: str | os.PathLike, *, scale: int = 1) -> str:
    """Writes an ``[H, W, 1 or 3]`` uint8 image as PNG, enlarged ``scale`` times (nearest)."""
    from PIL import Image

    image = np.asarray(image, np.uint8)
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    mode_image = image[..., 0] if image.shape[-1] == 1 else image
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(mode_image).save(path)
    return str(path)


def save_grid(images, path: str | os.PathLike, *, columns: int | None = None, scale: int = 2) -> str:
    """``save_png(image_grid(images, columns=columns), path, scale=scale)``."""
    return save_png(image_grid(images, columns=columns), path, scale=scale)
