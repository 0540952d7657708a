"""Fixtures shared by the tests of tfp_realnvp.data: synthetic images and file writers."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest


def _stripes(count, height=6, width=5):
    """``count`` distinct uint8 images, left-right asymmetric, image ``i`` tagged by ``i``."""
    images = np.zeros((count, height, width, 1), np.uint8)
    images[:, :, 0, 0] = 255  # bright left column: a flip moves it to the right
    images[:, 0, 1, 0] = np.arange(count)  # identity of the image
    return images


def _write_idx(path, array, *, compress=True):
    """Writes ``array`` as an IDX file (big-endian), gzip-compressed when asked."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def _write_image(path, image, **save_options):
    """Saves one uint8 image ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` with Pillow."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image, np.uint8)
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(path, **save_options)
    return path


def _tagged_folder(root, count, *, height=8, width=6):
    """``count`` lossless PNG files spread over nested folders; image ``i`` is filled with ``i``.

    Returns the images ``[count, height, width, 3]`` in the sorted order of their paths,
    so ``images[:, 0, 0, 0]`` are the tags as a folder reader lists them.
    """
    paths = []
    for i in range(count):
        sub = root / f"part{i % 3}" / ("deep" if i % 2 else "")
        paths.append(_write_image(sub / f"img{i:04d}.png", np.full((height, width, 3), i, np.uint8)))
    order = sorted(range(count), key=lambda i: str(paths[i]))
    return np.stack([np.full((height, width, 3), i, np.uint8) for i in order])


@pytest.fixture
def stripes():
    """``stripes(count, height=6, width=5)``: distinct, tagged, flip-asymmetric images."""
    return _stripes


@pytest.fixture
def write_idx():
    """``write_idx(path, array, compress=True)``: writes an IDX file."""
    return _write_idx


@pytest.fixture
def write_image():
    """``write_image(path, image, **pillow_save_options)``: writes a PNG/JPEG file."""
    return _write_image


@pytest.fixture
def tagged_folder():
    """``tagged_folder(root, count)``: nested PNG files whose pixels all equal their index."""
    return _tagged_folder


@pytest.fixture
def collect():
    """``collect(dataset)``: every element of a ``tf.data.Dataset`` as NumPy, in a list."""
    return lambda dataset: [element.numpy() for element in dataset]
