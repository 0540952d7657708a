"""Resizing, cropping and padding of images: NumPy/Pillow for arrays, TensorFlow in pipelines.

Arrays (:func:`resize_images`, :func:`pad_images`) need only NumPy and Pillow. The
per-image functions used inside ``tf.data`` pipelines (:func:`celeba_preprocess`,
:func:`lsun_preprocess` and the presets in :data:`PRESETS`) import TensorFlow when
called. Both paths crop before they resize, so pixels outside the window never reach
the result; Pillow resizes bicubic, TensorFlow antialiased bilinear.

Shared by the other data modules, not re-exported by :mod:`tfp_realnvp.data`: the
preset constants :data:`CELEBA_CROP`, :data:`LSUN_SHORT_SIDE` and
:data:`PRESET_IMAGE_SIZE`, and :func:`pad_amounts`, :func:`center_crop_resize_pil`,
:func:`resize_and_pad`, :func:`round_to_uint8`, :func:`check_preset` and
:func:`image_preprocessor`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tfp_realnvp.data.checks import Size, check_images, check_size, require_tensorflow

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "PRESETS",
    "celeba_preprocess",
    "lsun_preprocess",
    "pad_images",
    "resize_images",
]

CELEBA_CROP = 148
"""Side of the centered square window the ``"celeba"`` preset crops (the paper's 148)."""

LSUN_SHORT_SIDE = 96
"""What the ``"lsun"`` preset resizes the smaller side to, for a 64x64 output."""

PRESET_IMAGE_SIZE = 64
"""Output side of the ``"celeba"`` and ``"lsun"`` presets when no ``image_size`` is given."""

PRESETS = {
    "celeba": "center crop 148x148, resize to 64x64 (the paper's CelebA setup).",
    "lsun": "smaller side resized to 96, center crop 64x64 (the paper's LSUN setup).",
}
"""Named preprocessing of the paper, by the name streaming functions take as ``preset``."""


# ------------------------------------------------------------------------ NumPy arrays


def pad_amounts(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The zero padding that centers a ``height x width`` image in ``size``.

    The odd pixel, if any, goes bottom/right.

    Args:
        height: the image height.
        width: the image width.
        size: the target ``(height, width)``.

    Returns:
        ``(top, bottom, left, right)`` padding in pixels.

    Raises:
        ValueError: when ``size`` is smaller than the image in either dimension.
    """
    target_h, target_w = size
    if target_h < height or target_w < width:
        raise ValueError(f"pad_to must be at least the image size {height}x{width}; received {target_h}x{target_w}.")
    top, left = (target_h - height) // 2, (target_w - width) // 2
    return top, target_h - height - top, left, target_w - width - left


def pad_images(images: np.ndarray, size: Size) -> np.ndarray:
    """Zero-pads NHWC images to ``size``, centered (the odd pixel goes bottom/right).

    For example 28x28 Fashion-MNIST becomes 32x32 with 2 black pixels on each side.

    Args:
        images: ``uint8`` array ``[N, H, W, C]`` (or anything :func:`check_images` takes).
        size: the target side (``int``) or ``(height, width)``; not smaller than the images.

    Returns:
        A ``uint8`` array ``[N, height, width, C]``.

    Raises:
        ValueError: if ``size`` is not a positive size or is smaller than the images.
    """
    images = check_images(images)
    target = check_size(size, name="pad_to")
    top, bottom, left, right = pad_amounts(images.shape[1], images.shape[2], target)
    return np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)))


def center_crop_resize_pil(image: PILImage, size: tuple[int, int]) -> PILImage:
    """Center crops a Pillow image to the aspect ratio of ``size``, then resizes it (bicubic).

    The crop happens first, so pixels outside the window never reach the result.

    Args:
        image: a Pillow image.
        size: the target ``(height, width)``.

    Returns:
        A Pillow image of ``size`` (``image`` itself when it already has that size).
    """
    from PIL import Image

    height, width = size
    if image.size == (width, height):
        return image
    # The largest centered window with aspect ratio width / height.
    crop_w = min(image.width, round(image.height * width / height))
    crop_h = min(image.height, round(image.width * height / width))
    left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
    window = image.crop((left, top, left + crop_w, top + crop_h))
    if window.size == (width, height):
        return window
    return window.resize((width, height), Image.Resampling.BICUBIC)


def resize_images(images: np.ndarray, size: Size) -> np.ndarray:
    """Center crops NHWC images to the aspect ratio of ``size`` and resizes them.

    The same rule :func:`~tfp_realnvp.data.load_image_folder` applies to files: crop
    the largest centered window with the target aspect ratio, then resize it (bicubic,
    Pillow).

    Args:
        images: ``uint8`` array ``[N, H, W, C]`` (or anything :func:`check_images` takes).
        size: the target side (``int``) or ``(height, width)``.

    Returns:
        A ``uint8`` array ``[N, height, width, C]``.
    """
    from PIL import Image

    images = check_images(images)
    target = check_size(size, name="image_size")
    if images.shape[1:3] == target:
        return images
    out = np.empty((images.shape[0], *target, images.shape[3]), np.uint8)
    for i, image in enumerate(images):
        if image.shape[-1] in (1, 3):
            pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            out[i] = np.asarray(center_crop_resize_pil(pil, target)).reshape(*target, image.shape[-1])
        else:  # any other channel count: one grayscale plane at a time
            for c in range(image.shape[-1]):
                out[i, ..., c] = np.asarray(center_crop_resize_pil(Image.fromarray(image[..., c]), target))
    return out


def resize_and_pad(images: np.ndarray, image_size: Size | None, pad_to: Size | None) -> np.ndarray:
    """Resizes (when ``image_size``) and then pads (when ``pad_to``) NumPy images.

    The last step of the in-memory loaders: :func:`resize_images`, then :func:`pad_images`.

    Args:
        images: ``uint8`` array ``[N, H, W, C]``.
        image_size: ``None``, or the side / ``(height, width)`` to center crop and resize to.
        pad_to: ``None``, or the side / ``(height, width)`` to zero-pad to, after resizing.

    Returns:
        A ``uint8`` array ``[N, height, width, C]``; ``images`` itself when both are ``None``.

    Raises:
        ValueError: for a bad size, or a ``pad_to`` smaller than the (resized) images.
    """
    if image_size is not None:
        images = resize_images(images, image_size)
    if pad_to is not None:
        images = pad_images(images, pad_to)
    return images


# -------------------------------------------------------------------- TensorFlow images


def round_to_uint8(image: Any) -> Any:
    """Rounds a floating TensorFlow image to the nearest integer, clips to ``[0, 255]``, casts to ``uint8``.

    Args:
        image: a floating tensor of pixel values (any shape).

    Returns:
        A ``uint8`` tensor of the same shape.
    """
    tf = require_tensorflow()

    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _resize(image, size):
    """Antialiased bilinear resize of one ``[H, W, C]`` image, back to ``uint8``."""
    tf = require_tensorflow()

    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    return round_to_uint8(resized)


def _center_crop_resize(image, size: tuple[int, int]):
    """Largest centered crop with the aspect ratio of ``size``, resized to ``size``."""
    tf = require_tensorflow()

    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    target_h, target_w = size
    # crop_h / crop_w == target_h / target_w, as large as the image allows.
    crop_h = tf.minimum(height, (width * target_h) // target_w)
    crop_w = tf.minimum(width, (height * target_w) // target_h)
    crop = tf.image.crop_to_bounding_box(image, (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)
    return tf.ensure_shape(_resize(crop, size), [target_h, target_w, None])


def celeba_preprocess(image, *, image_size: Size = PRESET_IMAGE_SIZE):
    """The paper's CelebA preprocessing: center crop 148x148, resize to 64x64.

    Args:
        image: one ``uint8`` image ``[H, W, C]`` (CelebA: 218x178x3); a side shorter
            than 148 is zero padded to 148.
        image_size: the output side or ``(height, width)``; 64 by default.

    Returns:
        A ``uint8`` tensor ``[64, 64, C]`` (or ``image_size``).
    """
    tf = require_tensorflow()

    size = check_size(image_size, name="image_size")
    image = tf.convert_to_tensor(image)
    crop = tf.image.resize_with_crop_or_pad(image, CELEBA_CROP, CELEBA_CROP)
    return tf.ensure_shape(_resize(crop, size), [*size, image.shape[-1]])


def lsun_preprocess(
    image,
    *,
    image_size: Size = PRESET_IMAGE_SIZE,
    random_crop: bool = False,
    seed: Any = None,
):
    """The paper's LSUN preprocessing: smaller side to 96, then a 64x64 crop.

    The smaller side is resized to ``1.5 * image_size`` (96 for 64) keeping the aspect
    ratio, then a ``image_size`` square is cropped: centered by default, at a random
    place with ``random_crop=True`` (the paper's training crops).

    Args:
        image: one ``uint8`` image ``[H, W, C]`` of any size.
        image_size: the output side (``int``); 64 by default.
        random_crop: crop at random instead of in the center.
        seed: a stateless seed (shape ``[2]`` integers) for the random crop; ``None``
            uses a stateful random crop.

    Returns:
        A ``uint8`` tensor ``[image_size, image_size, C]``.
    """
    tf = require_tensorflow()

    height_out, width_out = check_size(image_size, name="image_size")
    if height_out != width_out:
        raise ValueError(f"lsun_preprocess makes square crops; received image_size={image_size!r}.")
    short_target = (LSUN_SHORT_SIDE * height_out) // PRESET_IMAGE_SIZE
    image = tf.convert_to_tensor(image)
    channels = image.shape[-1]
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    scale = short_target / tf.minimum(height, width)
    new_h = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), short_target)
    new_w = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), short_target)
    resized = _resize(image, tf.stack([new_h, new_w]))
    crop_shape = [height_out, width_out, tf.shape(image)[2]]
    if random_crop:
        if seed is None:
            cropped = tf.image.random_crop(resized, crop_shape)
        else:
            cropped = tf.image.stateless_random_crop(resized, crop_shape, seed=seed)
    else:
        cropped = tf.image.resize_with_crop_or_pad(resized, height_out, width_out)
    return tf.ensure_shape(cropped, [height_out, width_out, channels])


def check_preset(preset: str | None) -> str | None:
    """Checks that ``preset`` is ``None`` or a key of :data:`PRESETS`.

    Args:
        preset: ``None``, ``"celeba"`` or ``"lsun"``.

    Returns:
        ``preset``, unchanged.

    Raises:
        ValueError: naming the known presets and the received value.
    """
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset must be None or one of {sorted(PRESETS)}; received {preset!r}.")
    return preset


def image_preprocessor(preset: str | None, size: tuple[int, int] | None) -> Callable | None:
    """The per-image TensorFlow function of ``preset`` at ``size``; ``None`` when nothing is to do.

    ``"celeba"`` and ``"lsun"`` produce ``size`` (64x64 when ``None``); without a preset,
    ``size`` means a centered crop to its aspect ratio and a resize.

    Args:
        preset: ``None``, ``"celeba"`` or ``"lsun"``.
        size: ``None`` or the output ``(height, width)``.

    Returns:
        A function from one ``uint8`` image ``[H, W, C]`` to the preprocessed one, or
        ``None`` without a preset and a size.

    Raises:
        ValueError: for an unknown preset.
    """
    check_preset(preset)
    if preset == "celeba":
        return lambda image: celeba_preprocess(image, image_size=size or PRESET_IMAGE_SIZE)
    if preset == "lsun":
        return lambda image: lsun_preprocess(image, image_size=size or PRESET_IMAGE_SIZE)
    if size is not None:
        return lambda image: _center_crop_resize(image, size)
    return None
