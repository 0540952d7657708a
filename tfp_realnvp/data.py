"""uint8 image data for Real NVP: the shipped default, local files and tfds names.

Every loader here yields images as they are stored, ``uint8`` in ``[0, 256)`` and laid
out NHWC (``[N, H, W, C]`` for arrays, ``[H, W, C]`` per element for datasets). The
flow's own preprocessing adds dequantization noise and maps pixels to logit space, so
nothing here scales or normalises pixels.

Two entry points, one return type each:

* :func:`load_images` returns a NumPy ``uint8`` array ``[N, H, W, C]`` for the sources
  that live on disk: ``"shipped"`` (the default), a ``.npz`` file, an IDX file or
  directory (MNIST / Fashion-MNIST layout) or a folder of PNG/JPEG files. It needs
  only NumPy and Pillow, so it works on every Keras backend, TensorFlow or not. The array feeds
  ``model.fit(x, batch_size=...)`` directly, or :func:`make_dataset`.
* :func:`get_dataset` returns a ``tf.data.Dataset`` whose elements are single ``uint8``
  images ``[H, W, C]`` with a fully known static shape (read it from
  ``dataset.element_spec.shape``). It takes everything :func:`load_images` takes plus
  the tfds names listed in :data:`TFDS_DATASETS`. It needs TensorFlow.

:func:`make_dataset` turns either of the two into the training pipeline: shuffled,
optionally flipped, batched and prefetched ``uint8`` batches ``[B, H, W, C]`` with no
labels, which Keras ``fit`` reads as ``x``::

    from tfp_realnvp import data

    train = data.make_dataset(data.load_images(split="train"), batch_size=64, seed=0)
    test = data.make_dataset(data.load_images(split="test"), batch_size=256, shuffle=False)
    model.fit(train, validation_data=test, epochs=10)

    celeba = data.make_dataset(data.get_dataset("celeb_a", split="train"), batch_size=64,
                               flip=True, seed=0)

Splits. IDX directories and tfds datasets come with their own splits. A source that is
one set of images (the shipped file, a ``.npz`` without split keys, one IDX file, an
image folder) is split deterministically: a fixed permutation puts
``round(train_fraction * N)`` images in ``"train"`` and the rest in ``"test"``, each
kept in the original order; ``"all"`` returns every image. The split does not depend
on NumPy's global random state.

Only :func:`get_dataset`, :func:`make_dataset`, :func:`load_tfds` and the ``*_preprocess``
functions import TensorFlow, and they do so when called, so ``import tfp_realnvp.data``
works where TensorFlow is not installed.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SHIPPED_FILE",
    "TFDS_DATASETS",
    "celeba_preprocess",
    "check_images",
    "get_dataset",
    "load_idx_dir",
    "load_image_folder",
    "load_images",
    "load_npz",
    "load_shipped",
    "load_tfds",
    "lsun_preprocess",
    "make_dataset",
    "pad_images",
    "read_idx",
    "resize_images",
]

PathLike = Union[str, os.PathLike]
Size = Union[int, Sequence[int]]

SHIPPED_FILE = "fashion_mnist_test.npz"
"""Name of the shipped file inside ``tfp_realnvp/data_files``."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Class names of Fashion-MNIST, indexed by label."""

TFDS_DATASETS = {
    "mnist": "28x28x1 digits, as stored.",
    "fashion_mnist": "28x28x1 Zalando articles, as stored.",
    "cifar10": "32x32x3, as stored.",
    "celeb_a": "218x178x3 faces; center crop 148x148, resize to 64x64 (the paper's setup).",
    "imagenet_resized/32x32": "32x32x3 downsampled ImageNet, as stored.",
    "imagenet_resized/64x64": "64x64x3 downsampled ImageNet, as stored.",
    "lsun/<category>": "smaller side resized to 96, center crop 64x64 (e.g. lsun/bedroom).",
}
"""tfds names that :func:`load_tfds` knows, with the preprocessing each gets."""

SPLITS = ("train", "test", "all")
_SPLIT_SEED = 20170101
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CELEBA_CROP = 148
_LSUN_SHORT_SIDE = 96
_DEFAULT_FLOW_SIZE = 64

# IDX type codes -> big-endian NumPy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _tensorflow():
    """Imports TensorFlow, or says what to use instead where it is not installed."""
    try:
        import tensorflow
    except ImportError as error:
        raise ImportError(
            "this function builds tf.data pipelines and needs TensorFlow "
            "(pip install 'tfp-realnvp[tensorflow]'); without it, load_images() returns "
            "NumPy arrays that Keras fit takes on any backend."
        ) from error
    return tensorflow


# ----------------------------------------------------------------------------- checks


def check_images(images: Any, *, name: str = "images") -> np.ndarray:
    """Checks that ``images`` are pixel values and returns them as ``uint8`` NHWC.

    Accepts NumPy arrays and concrete tensors of any backend (anything ``np.asarray``
    reads). Rank 4 is ``[N, H, W, C]``; rank 3 is read as a batch of grayscale images
    ``[N, H, W]`` and gets a channel axis. Integer dtypes must lie in ``[0, 256)``;
    floating dtypes must hold integral values in ``[0, 256)`` and no NaN.

    Args:
        images: the images.
        name: what to call them in error messages.

    Returns:
        A ``uint8`` NumPy array ``[N, H, W, C]`` (no copy when already ``uint8`` NHWC).

    Raises:
        ValueError: naming the received dtype, shape, and min/max where they matter,
            when the rank is not 3 or 4, a dimension is zero, the dtype is not numeric,
            or a value is NaN, non-integral or outside ``[0, 256)``.
    """
    try:
        array = np.asarray(images)
    except Exception as error:  # symbolic tensors, ragged inputs, ...
        raise ValueError(
            f"{name} must be concrete array data; received {type(images).__name__} ({error})."
        ) from error
    described = f"received dtype {array.dtype}, shape {list(array.shape)}"
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"{name} must have an integer or floating dtype; {described}.")
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4:
        raise ValueError(
            f"{name} must have rank 4 [N, H, W, C] (or rank 3 [N, H, W] for grayscale); "
            f"{described}."
        )
    if 0 in array.shape:
        raise ValueError(f"{name} must hold at least one pixel in every dimension; {described}.")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        nan_count = int(np.isnan(array).sum())
        if nan_count:
            finite = array[~np.isnan(array)]
            span = f"min {finite.min()}, max {finite.max()}" if finite.size else "min nan, max nan"
            raise ValueError(
                f"{name} must not contain NaN; {described}, {span}, {nan_count} NaN value(s)."
            )
    low, high = array.min(), array.max()
    if low < 0 or high >= 256:
        raise ValueError(
            f"{name} must lie in [0, 256); {described}, min {low}, max {high}."
        )
    if np.issubdtype(array.dtype, np.floating):
        fractional = array != np.floor(array)
        if fractional.any():
            example = array[fractional].flat[0]
            raise ValueError(
                f"{name} must hold integer pixel values; {described}, min {low}, max {high}, "
                f"non-integral values such as {example}."
            )
    return array.astype(np.uint8)


def _check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}; received {split!r}.")
    return split


def _check_fraction(train_fraction: float) -> float:
    try:
        value = float(train_fraction)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1); received {train_fraction!r}.")
    return value


def _check_size(size: Size | None, *, name: str) -> tuple[int, int] | None:
    """Normalises an ``int`` or ``(height, width)`` size; ``None`` passes through."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair = (int(size), int(size))
    elif (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be an int or a (height, width) pair; received {size!r}.")
    if min(pair) <= 0:
        raise ValueError(f"{name} must be positive; received {size!r}.")
    return pair


def _split_indices(count: int, split: str, train_fraction: float) -> np.ndarray:
    """Indices of ``split`` among ``count`` items: a fixed permutation, kept sorted."""
    _check_split(split)
    fraction = _check_fraction(train_fraction)
    if split == "all":
        return np.arange(count)
    order = np.random.default_rng(_SPLIT_SEED).permutation(count)
    num_train = int(round(fraction * count))
    chosen = order[:num_train] if split == "train" else order[num_train:]
    if chosen.size == 0:
        raise ValueError(
            f"split {split!r} is empty: {count} image(s) with train_fraction={train_fraction!r}."
        )
    return np.sort(chosen)


# ----------------------------------------------------------------------- numpy helpers


def _pad_amounts(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding that centers ``height x width`` in ``size``."""
    target_h, target_w = size
    if target_h < height or target_w < width:
        raise ValueError(
            f"pad_to must be at least the image size {height}x{width}; "
            f"received {target_h}x{target_w}."
        )
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
    target = _check_size(size, name="pad_to")
    top, bottom, left, right = _pad_amounts(images.shape[1], images.shape[2], target)
    return np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)))


def _fit_pil(image, size: tuple[int, int]):
    """Center crop to the aspect ratio of ``size``, then resize (Pillow, bicubic).

    The crop happens first, so pixels outside the window never reach the result.
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

    The same rule :func:`load_image_folder` applies to files: crop the largest centered
    window with the target aspect ratio, then resize it (bicubic, Pillow).

    Args:
        images: ``uint8`` array ``[N, H, W, C]`` (or anything :func:`check_images` takes).
        size: the target side (``int``) or ``(height, width)``.

    Returns:
        A ``uint8`` array ``[N, height, width, C]``.
    """
    from PIL import Image

    images = check_images(images)
    target = _check_size(size, name="image_size")
    if images.shape[1:3] == target:
        return images
    out = np.empty((images.shape[0], *target, images.shape[3]), np.uint8)
    for i, image in enumerate(images):
        if image.shape[-1] in (1, 3):
            pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            out[i] = np.asarray(_fit_pil(pil, target)).reshape(*target, image.shape[-1])
        else:  # any other channel count: one grayscale plane at a time
            for c in range(image.shape[-1]):
                out[i, ..., c] = np.asarray(_fit_pil(Image.fromarray(image[..., c]), target))
    return out


def _finish(images: np.ndarray, image_size: Size | None, pad_to: Size | None) -> np.ndarray:
    if image_size is not None:
        images = resize_images(images, image_size)
    if pad_to is not None:
        images = pad_images(images, pad_to)
    return images


# ------------------------------------------------------------------------ local files


def read_idx(path: PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), plain or gzip-compressed.

    The header is two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B``
    int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the rank, then one
    big-endian ``uint32`` per dimension; the data follow big-endian. Files ending in
    ``.gz`` (or starting with the gzip magic) are decompressed.

    Args:
        path: the file.

    Returns:
        The array in native byte order with the stored shape and dtype.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the path when the header or the data length is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {str(path)!r}.")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(f"{str(path)!r} is not a valid gzip file: {error}.") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{str(path)!r} is not an IDX file: bad magic number {raw[:4]!r}.")
    code, rank = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} has an unknown IDX type code 0x{code:02X}.")
    header_end = 4 + 4 * rank
    if len(raw) < header_end:
        raise ValueError(f"{str(path)!r} is truncated inside its IDX header.")
    shape = struct.unpack(f">{rank}I", raw[4:header_end])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise ValueError(
            f"{str(path)!r} holds {len(raw) - header_end} data bytes; its header "
            f"(shape {list(shape)}, dtype {dtype.newbyteorder('=')}) needs {expected}."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _idx_prefixes(split: str) -> tuple[str, ...]:
    return ("train",) if split == "train" else ("t10k", "test")


def _find_idx(directory: Path, split: str, kind: str, rank: int) -> Path | None:
    for prefix in _idx_prefixes(split):
        for sep in ("-", "."):
            for suffix in ("", ".gz"):
                candidate = directory / f"{prefix}-{kind}{sep}idx{rank}-ubyte{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def _is_idx_dir(directory: Path) -> bool:
    return any(_find_idx(directory, s, "images", 3) for s in ("train", "test"))


def load_idx_dir(
    directory: PathLike, *, split: str = "train"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Loads an MNIST-style directory of IDX files.

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``split="train"``)
    or ``t10k-...`` (also ``test-...``, ``split="test"``), each plain or ``.gz``, as
    published for MNIST and Fashion-MNIST (e.g. Debian's ``dataset-fashion-mnist`` in
    ``/usr/share/datasets/fashion-mnist``). ``split="all"`` concatenates train and test.

    Args:
        directory: the directory.
        split: ``"train"``, ``"test"`` or ``"all"``.

    Returns:
        ``(images, labels)``: ``uint8`` images ``[N, H, W, 1]`` and the labels ``[N]``,
        or ``None`` for the labels when the label file is absent.

    Raises:
        FileNotFoundError: naming the directory and the file names tried.
        ValueError: for a bad split, or when images and labels disagree in count.
    """
    _check_split(split)
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"IDX directory not found: {str(directory)!r}.")
    if split == "all":
        parts = [load_idx_dir(directory, split=s) for s in ("train", "test")]
        images = np.concatenate([p[0] for p in parts])
        labels = None if any(p[1] is None for p in parts) else np.concatenate([p[1] for p in parts])
        return images, labels
    image_file = _find_idx(directory, split, "images", 3)
    if image_file is None:
        tried = ", ".join(f"{p}-images-idx3-ubyte[.gz]" for p in _idx_prefixes(split))
        raise FileNotFoundError(
            f"no {split} images in {str(directory)!r}; looked for {tried}."
        )
    images = check_images(read_idx(image_file), name=str(image_file))
    label_file = _find_idx(directory, split, "labels", 1)
    labels = None
    if label_file is not None:
        labels = read_idx(label_file)
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"{str(label_file)!r} holds labels of shape {list(labels.shape)} for "
                f"{images.shape[0]} images in {str(image_file)!r}."
            )
    return images, labels


def load_npz(path: PathLike, *, key: str | None = None) -> np.ndarray:
    """Loads images from a ``.npz`` file (as written by ``np.savez``).

    Args:
        path: the file.
        key: the array to read. ``None`` takes the only array in the file, or else the
            first of ``"images"``, ``"image"``, ``"x"``, ``"arr_0"`` that exists.

    Returns:
        ``uint8`` images ``[N, H, W, C]`` (see :func:`check_images`).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the path and its keys when ``key`` is missing or no array
            can be chosen, or when the array is not images.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".npz file not found: {str(path)!r}.")
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        if key is None:
            if len(keys) == 1:
                key = keys[0]
            else:
                key = next((k for k in ("images", "image", "x", "arr_0") if k in keys), None)
                if key is None:
                    raise ValueError(
                        f"cannot tell which array of {str(path)!r} holds the images; "
                        f"pass key= one of {keys}."
                    )
        elif key not in keys:
            raise ValueError(f"{str(path)!r} has no array {key!r}; its keys are {keys}.")
        array = archive[key]
    return check_images(array, name=f"{path.name}[{key!r}]")


def _list_image_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
    )


def load_image_folder(directory: PathLike, *, image_size: Size | None = None) -> np.ndarray:
    """Loads every PNG/JPEG file under ``directory`` (recursively, sorted by path).

    Images are grayscale (``C = 1``) when every file is grayscale, otherwise RGB
    (``C = 3``; alpha is dropped, palettes are expanded). With ``image_size`` every image
    is center cropped to the target aspect ratio and resized (bicubic), the same rule as
    :func:`resize_images`; without it all files must already share one size.

    Args:
        directory: the folder.
        image_size: ``None``, a side (``int``) or ``(height, width)``.

    Returns:
        ``uint8`` images ``[N, H, W, C]``.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: naming the folder when it holds no images, a file cannot be
            decoded, or sizes differ and ``image_size`` is ``None``.
    """
    from PIL import Image, UnidentifiedImageError

    target = _check_size(image_size, name="image_size")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder not found: {str(directory)!r}.")
    files = _list_image_files(directory)
    if not files:
        raise ValueError(
            f"no image files ({', '.join(_IMAGE_SUFFIXES)}) found under {str(directory)!r}."
        )
    pil_images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                pil_images.append(image.copy())
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"cannot decode image {str(file)!r}: {error}.") from error
    grayscale = all(im.mode in ("1", "L", "LA", "I", "I;16", "F") for im in pil_images)
    mode = "L" if grayscale else "RGB"
    pil_images = [im.convert(mode) if im.mode != mode else im for im in pil_images]
    if target is None:
        sizes = sorted({(im.height, im.width) for im in pil_images})
        if len(sizes) > 1:
            shown = ", ".join(f"{h}x{w}" for h, w in sizes[:5])
            raise ValueError(
                f"images under {str(directory)!r} have different sizes ({shown}"
                f"{', ...' if len(sizes) > 5 else ''}); pass image_size= to resize them."
            )
        target = sizes[0]
    arrays = [np.asarray(_fit_pil(im, target), dtype=np.uint8) for im in pil_images]
    images = np.stack(arrays)
    return check_images(images, name=str(directory))


# ---------------------------------------------------------------------------- shipped


@functools.lru_cache(maxsize=1)
def _read_shipped() -> tuple[np.ndarray, np.ndarray]:
    resource = importlib.resources.files("tfp_realnvp") / "data_files" / SHIPPED_FILE
    if not resource.is_file():
        raise FileNotFoundError(
            f"the shipped data file {str(resource)!r} is missing; reinstall tfp_realnvp "
            "or regenerate it with scripts/make_shipped_data.py."
        )
    with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_shipped(
    *, split: str = "train", train_fraction: float = 0.9, pad_to: Size | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads the Fashion-MNIST images shipped inside the package.

    The file holds the 10,000 images of the Fashion-MNIST test split (28x28 grayscale,
    ``uint8``) with their labels (see :data:`FASHION_MNIST_CLASSES`). It is split here
    into ``"train"`` and ``"test"`` by a fixed permutation, so the same call always
    returns the same images and the two splits never share one.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"`` (all 10,000 in the stored order).
        train_fraction: the share of images in ``"train"``; 0.9 gives 9,000 / 1,000.
        pad_to: optional side (``int``) or ``(height, width)`` to zero-pad to, e.g. 32.

    Returns:
        ``(images, labels)``: ``uint8`` ``[N, 28, 28, 1]`` (or padded) and ``uint8 [N]``.

    Raises:
        ValueError: naming the received split, fraction or size when one is invalid.
        FileNotFoundError: if the shipped file is missing from the installation.
    """
    _check_split(split)
    _check_fraction(train_fraction)
    target = _check_size(pad_to, name="pad_to")
    images, labels = _read_shipped()
    index = _split_indices(len(images), split, train_fraction)
    images, labels = images[index], labels[index]
    if target is not None:
        images = pad_images(images, target)
    return images, labels


# ------------------------------------------------------------------------ dispatching


def _looks_like_path(source: str) -> bool:
    return os.sep in source or "/" in source or source.startswith(".") or source.endswith(".npz")


def _tfds_key(name: str) -> str | None:
    """The :data:`TFDS_DATASETS` entry matching ``name`` (a version suffix is allowed)."""
    base = name.split(":", 1)[0]
    if base in TFDS_DATASETS:
        return base
    if base.startswith("lsun/") and len(base) > len("lsun/"):
        return "lsun/<category>"
    return None


def _known_sources() -> str:
    return (
        "'shipped', a path to a .npz file, an IDX directory or an image folder, "
        f"or a tfds name: {sorted(TFDS_DATASETS)}"
    )


def load_images(
    source: PathLike = "shipped",
    *,
    split: str = "train",
    image_size: Size | None = None,
    pad_to: Size | None = None,
    train_fraction: float = 0.9,
    key: str | None = None,
) -> np.ndarray:
    """Loads local images as one NumPy ``uint8`` array ``[N, H, W, C]``.

    Sources:

    * ``"shipped"``: the Fashion-MNIST file inside the package (:func:`load_shipped`).
    * a ``.npz`` file: the array ``x_<split>`` or ``images_<split>`` when the file has
      one (as ``keras.datasets`` writes ``x_train`` / ``x_test``), otherwise the array
      :func:`load_npz` picks (or ``key``), split by ``train_fraction``.
    * an IDX directory (``train-images-idx3-ubyte[.gz]`` etc.): its own splits.
    * a single IDX file (a name containing ``idx``, plain or ``.gz``): split by
      ``train_fraction``.
    * any other directory: PNG/JPEG files (:func:`load_image_folder`), split by
      ``train_fraction``.

    Needs no TensorFlow. For tfds names use :func:`get_dataset`.

    Args:
        source: ``"shipped"`` or a path.
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: optional side or ``(height, width)``: center crop + resize.
        pad_to: optional side or ``(height, width)``: zero padding, after resizing.
        train_fraction: the ``"train"`` share of a source without its own splits.
        key: the array of a ``.npz`` file to read (overrides the split keys).

    Returns:
        ``uint8`` images ``[N, H, W, C]``.

    Raises:
        FileNotFoundError: naming the path when it does not exist.
        ValueError: naming the received value for a bad split, size or fraction, a
            tfds name (they stream: use :func:`get_dataset`), or an unknown source.
    """
    _check_split(split)
    _check_fraction(train_fraction)
    _check_size(image_size, name="image_size")
    _check_size(pad_to, name="pad_to")
    if isinstance(source, str) and source == "shipped":
        images = load_shipped(split=split, train_fraction=train_fraction)[0]
        return _finish(images, image_size, pad_to)
    path = Path(source)
    if path.is_dir():
        if _is_idx_dir(path):
            images = load_idx_dir(path, split=split)[0]
            return _finish(images, image_size, pad_to)
        images = load_image_folder(path, image_size=image_size)
        return _finish(images[_split_indices(len(images), split, train_fraction)], None, pad_to)
    if path.is_file():
        if "idx" in path.name.lower() and path.suffix.lower() != ".npz":
            images = check_images(read_idx(path), name=str(path))
            chosen = images[_split_indices(len(images), split, train_fraction)]
            return _finish(chosen, image_size, pad_to)
        if path.suffix.lower() != ".npz":
            raise ValueError(
                f"cannot read images from {str(path)!r}: expected a .npz file, an IDX "
                "file or directory, or an image folder."
            )
        split_key = None
        if key is None and split != "all":
            with np.load(path, allow_pickle=False) as archive:
                split_key = next(
                    (k for k in (f"x_{split}", f"images_{split}") if k in archive.files), None
                )
        if split_key is not None:
            return _finish(load_npz(path, key=split_key), image_size, pad_to)
        images = load_npz(path, key=key)
        chosen = images[_split_indices(len(images), split, train_fraction)]
        return _finish(chosen, image_size, pad_to)
    if isinstance(source, str) and _tfds_key(source) is not None:
        raise ValueError(
            f"{source!r} is a tfds dataset, read as a stream: use get_dataset({source!r}, "
            "split=...), which returns a tf.data.Dataset."
        )
    if isinstance(source, os.PathLike) or _looks_like_path(str(source)):
        raise FileNotFoundError(f"no such file or directory: {str(source)!r}.")
    raise ValueError(f"unknown image source {source!r}; expected {_known_sources()}.")


def get_dataset(
    source: PathLike = "shipped",
    *,
    split: str = "train",
    image_size: Size | None = None,
    pad_to: Size | None = None,
    train_fraction: float = 0.9,
    key: str | None = None,
    data_dir: PathLike | None = None,
    shuffle_files: bool = False,
):
    """One entry point for every source: a ``tf.data.Dataset`` of single images.

    Local sources (``"shipped"`` and paths) are read with :func:`load_images`; any other
    string is a tfds name read with :func:`load_tfds` (an existing path wins over a tfds
    name spelled the same). Either way the elements are
    ``uint8`` tensors ``[H, W, C]`` with a static shape, unbatched; pass the dataset to
    :func:`make_dataset` (or batch it yourself) for training.

    Args:
        source: ``"shipped"`` (default), a path, or a tfds name (:data:`TFDS_DATASETS`).
        split: ``"train"``, ``"test"`` or ``"all"`` for local sources; any tfds split
            string (e.g. ``"validation"``, ``"train[:90%]"``) for tfds names.
        image_size: optional side or ``(height, width)`` (see :func:`load_images` and
            :func:`load_tfds`).
        pad_to: optional side or ``(height, width)`` to zero-pad to, after resizing.
        train_fraction: the ``"train"`` share of a local source without its own splits.
        key: the array of a ``.npz`` file to read.
        data_dir: where tfds keeps its data (tfds names only).
        shuffle_files: passed to ``tfds.load`` (tfds names only).

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` images ``[H, W, C]``; the image shape is
        ``dataset.element_spec.shape``.

    Raises:
        FileNotFoundError: naming the path for a missing local source.
        ValueError: naming the received value for an unknown source or a bad option.
    """
    tf = _tensorflow()

    target_pad = _check_size(pad_to, name="pad_to")
    is_local = not isinstance(source, str) or source == "shipped" or Path(source).exists()
    if is_local or _tfds_key(str(source)) is None:
        images = load_images(
            source, split=split, image_size=image_size, pad_to=pad_to,
            train_fraction=train_fraction, key=key,
        )
        return tf.data.Dataset.from_tensor_slices(images)
    dataset = load_tfds(
        source, split=split, data_dir=data_dir, image_size=image_size, shuffle_files=shuffle_files
    )
    if target_pad is not None:
        height, width, channels = dataset.element_spec.shape
        top, bottom, left, right = _pad_amounts(height, width, target_pad)
        paddings = [[top, bottom], [left, right], [0, 0]]
        dataset = dataset.map(
            lambda image: tf.ensure_shape(tf.pad(image, paddings), [*target_pad, channels]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset


# ------------------------------------------------------------------------------- tfds


def _to_uint8(image):
    tf = _tensorflow()

    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _resize(image, size: tuple[int, int]):
    """Antialiased bilinear resize of one ``[H, W, C]`` image, back to ``uint8``."""
    tf = _tensorflow()

    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    return _to_uint8(resized)


def _center_crop_resize(image, size: tuple[int, int]):
    """Largest centered crop with the aspect ratio of ``size``, resized to ``size``."""
    tf = _tensorflow()

    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    target_h, target_w = size
    # crop_h / crop_w == target_h / target_w, as large as the image allows.
    crop_h = tf.minimum(height, (width * target_h) // target_w)
    crop_w = tf.minimum(width, (height * target_w) // target_h)
    crop = tf.image.crop_to_bounding_box(
        image, (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w
    )
    return tf.ensure_shape(_resize(crop, size), [target_h, target_w, None])


def celeba_preprocess(image, *, image_size: Size = _DEFAULT_FLOW_SIZE):
    """The paper's CelebA preprocessing: center crop 148x148, resize to 64x64.

    Args:
        image: one ``uint8`` image ``[H, W, C]`` (CelebA: 218x178x3); a side shorter
            than 148 is zero padded to 148.
        image_size: the output side or ``(height, width)``; 64 by default.

    Returns:
        A ``uint8`` tensor ``[64, 64, C]`` (or ``image_size``).
    """
    tf = _tensorflow()

    size = _check_size(image_size, name="image_size")
    image = tf.convert_to_tensor(image)
    crop = tf.image.resize_with_crop_or_pad(image, _CELEBA_CROP, _CELEBA_CROP)
    return tf.ensure_shape(_resize(crop, size), [*size, image.shape[-1]])


def lsun_preprocess(
    image,
    *,
    image_size: Size = _DEFAULT_FLOW_SIZE,
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
    tf = _tensorflow()

    height_out, width_out = _check_size(image_size, name="image_size")
    if height_out != width_out:
        raise ValueError(f"lsun_preprocess makes square crops; received image_size={image_size!r}.")
    short_target = (_LSUN_SHORT_SIDE * height_out) // _DEFAULT_FLOW_SIZE
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


def load_tfds(
    name: str,
    *,
    split: str,
    data_dir: PathLike | None = None,
    image_size: Size | None = None,
    shuffle_files: bool = False,
):
    """Loads a tfds image dataset as a ``tf.data.Dataset`` of ``uint8`` images.

    Known names and their preprocessing are in :data:`TFDS_DATASETS`: MNIST,
    Fashion-MNIST, CIFAR-10 and downsampled ImageNet are used as stored; CelebA gets
    :func:`celeba_preprocess` and LSUN categories (``"lsun/bedroom"``, ...) get
    :func:`lsun_preprocess` with center crops, so every epoch sees the same images.
    A version suffix (``"cifar10:3.0.2"``) is passed on to tfds. tfds downloads and
    prepares the data on first use (network access needed); pass ``data_dir`` to use
    a prepared copy.

    Args:
        name: a tfds name from :data:`TFDS_DATASETS`.
        split: a tfds split string, e.g. ``"train"``, ``"test"``, ``"train[:90%]"``.
        data_dir: the tfds data directory; ``None`` uses tfds' default.
        image_size: the output side or ``(height, width)``. ``None`` keeps the stored
            size (64x64 for CelebA and LSUN). Otherwise CelebA and LSUN produce this
            size from their crops, and other datasets are center cropped to its aspect
            ratio and resized (antialiased bilinear).
        shuffle_files: passed to ``tfds.load``.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[H, W, C]`` with a static shape.

    Raises:
        ValueError: naming the received name and listing the known names when
            ``name`` is not one of them, or naming a bad ``split`` / ``image_size``.
    """
    known = _tfds_key(name) if isinstance(name, str) else None
    if known is None:
        raise ValueError(
            f"unknown tfds dataset {name!r}; known names: {sorted(TFDS_DATASETS)} "
            "(lsun takes any category, e.g. 'lsun/bedroom')."
        )
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a tfds split string such as 'train'; received {split!r}.")
    size = _check_size(image_size, name="image_size")
    tf = _tensorflow()
    import tensorflow_datasets as tfds

    dataset = tfds.load(
        name,
        split=split,
        data_dir=None if data_dir is None else os.fspath(data_dir),
        shuffle_files=shuffle_files,
    )
    if known == "celeb_a":
        def preprocess(image):
            return celeba_preprocess(image, image_size=size or _DEFAULT_FLOW_SIZE)
    elif known == "lsun/<category>":
        def preprocess(image):
            return lsun_preprocess(image, image_size=size or _DEFAULT_FLOW_SIZE)
    elif size is not None:
        def preprocess(image):
            return _center_crop_resize(image, size)
    else:
        def preprocess(image):
            return image

    def select(example):
        image = tf.convert_to_tensor(example["image"])
        if image.dtype != tf.uint8:
            image = _to_uint8(tf.cast(image, tf.float32))
        return preprocess(image)

    dataset = dataset.map(select, num_parallel_calls=tf.data.AUTOTUNE)
    if not dataset.element_spec.shape.is_fully_defined():
        raise ValueError(
            f"tfds dataset {name!r} gives images of unknown shape "
            f"{dataset.element_spec.shape}; pass image_size= to fix it."
        )
    return dataset


# ----------------------------------------------------------------------- tf.data input


def make_dataset(
    images,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    flip: bool = False,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int | None = None,
):
    """Builds the training input: shuffled, flipped, batched, prefetched ``uint8`` images.

    Elements are ``uint8`` batches ``[B, H, W, C]`` and nothing else, so Keras ``fit``,
    ``evaluate`` and ``predict`` read them as ``x`` with no labels.

    Args:
        images: a ``uint8`` array ``[N, H, W, C]`` (anything :func:`check_images`
            takes), or a ``tf.data.Dataset`` of single images ``[H, W, C]`` such as
            :func:`get_dataset` returns.
        batch_size: images per batch.
        shuffle: shuffle the images, reshuffling each epoch.
        seed: makes shuffling and flips reproducible; ``None`` draws fresh ones.
        flip: flip each image left-right with probability 1/2.
        repeat: repeat forever (pass ``steps_per_epoch`` to ``fit``).
        drop_remainder: drop the last, smaller batch of an epoch.
        shuffle_buffer: the shuffle buffer; ``None`` uses the whole array, or 10,000
            images for a dataset.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[B, H, W, C]``.

    Raises:
        ValueError: naming the received value for a bad ``batch_size`` or
            ``shuffle_buffer``, or images that :func:`check_images` rejects.
    """
    tf = _tensorflow()

    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size <= 0
    ):
        raise ValueError(f"batch_size must be a positive int; received {batch_size!r}.")
    if shuffle_buffer is not None and (
        isinstance(shuffle_buffer, bool)
        or not isinstance(shuffle_buffer, (int, np.integer))
        or shuffle_buffer <= 0
    ):
        raise ValueError(f"shuffle_buffer must be a positive int; received {shuffle_buffer!r}.")
    if isinstance(images, tf.data.Dataset):
        spec = images.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 3 or spec.dtype != tf.uint8:
            raise ValueError(
                "a dataset passed to make_dataset must yield single uint8 images [H, W, C]; "
                f"received element_spec {spec}."
            )
        dataset = images
        buffer = shuffle_buffer or 10_000
    else:
        array = check_images(images)
        dataset = tf.data.Dataset.from_tensor_slices(array)
        buffer = shuffle_buffer or len(array)
    if shuffle:
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    if flip:
        # One random int64 per batch seeds a stateless draw of per-image flips.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            _flip_batch, num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _flip_batch(batch, seed):
    tf = _tensorflow()

    draw = tf.random.stateless_uniform(
        tf.shape(batch)[:1], seed=tf.stack([seed, tf.constant(0, tf.int64)])
    )
    flipped = tf.where(draw[:, None, None, None] < 0.5, tf.reverse(batch, axis=[2]), batch)
    return tf.ensure_shape(flipped, batch.shape)
