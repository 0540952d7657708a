"""Out-of-distribution image sets made from nothing but the in-distribution images.

Each set has the shape of the images it is made from, uint8 ``[N, H, W, C]``:

* ``"noise"``: every pixel uniform on ``{0, ..., 255}``;
* ``"constant"``: each image one uniform gray level (per channel);
* ``"vflip"``: the images upside down;
* ``"inverted"``: ``255 - x``;
* ``"rot90"``: the images turned a quarter anticlockwise (``np.rot90``; square images);
* ``"letters"``: Latin letters (``A-Z``, ``a-z``), light on a dark ground like MNIST's
  digits, rendered in Pillow's built-in scalable font at a random size (55-85% of the
  height), stroke width (up to a tenth of the size), shift (up to a tenth of the size) and
  rotation (up to 15 degrees). No image of it
  comes from the in-distribution set, so it serves as a held-out check of a method chosen
  on other sets.
"""

from __future__ import annotations

import numpy as np

#: The names ``synthetic_ood_images`` makes.
SYNTHETIC_OOD_SETS = ("noise", "constant", "vflip", "inverted", "rot90", "letters")

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


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
    if name == "rot90":
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"rot90 needs square images; received shape {list(images.shape)}.")
        return np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2))).astype(np.uint8)
    if name == "letters":
        return _letters(images.shape, rng)
    raise ValueError(f"name must be one of {list(SYNTHETIC_OOD_SETS)}; received {name!r}.")


def _letters(shape, rng: np.random.Generator) -> np.ndarray:
    """``"letters"`` of ``shape`` ``[N, H, W, C]``: one random letter per image, every channel alike."""
    from PIL import Image, ImageDraw, ImageFont, features

    if not features.check("freetype2"):
        raise ValueError('the "letters" set needs Pillow built with FreeType (Pillow\'s scalable default font).')
    count, height, width, channels = shape
    fonts = {}
    out = np.empty((count, height, width), np.uint8)
    for i in range(count):
        size = int(round(height * rng.uniform(0.55, 0.85)))
        font = fonts.get(size) or fonts.setdefault(size, ImageFont.load_default(size=size))
        canvas = Image.new("L", (width, height), 0)
        dx, dy = rng.uniform(-0.1, 0.1, 2) * size
        letter = LETTERS[rng.integers(len(LETTERS))]
        stroke = int(rng.integers(0, size // 10 + 1))
        ImageDraw.Draw(canvas).text(
            (width / 2 + dx, height / 2 + dy),
            letter,
            fill=255,
            font=font,
            anchor="mm",
            stroke_width=stroke,
            stroke_fill=255,
        )
        canvas = canvas.rotate(rng.uniform(-15.0, 15.0), resample=Image.BILINEAR)
        out[i] = np.asarray(canvas)
    return np.repeat(out[..., None], channels, axis=-1)
