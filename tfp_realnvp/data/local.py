"""Local files: IDX (MNIST layout), ``.npz`` arrays and folders of PNG/JPEG images.

Each loader reads the whole source into one NumPy ``uint8`` array ``[N, H, W, C]``;
they need only NumPy and Pillow, so they work on every Keras backend. They suit sets
that fit in memory; :mod:`tfp_realnvp.data.streaming` reads larger ones file by file.

Shared by the other data modules, not re-exported by :mod:`tfp_realnvp.data`:
:func:`is_idx_dir` and :func:`npz_image_key`.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from tfp_realnvp.data.checks import PathLike, Size, check_images, check_size, check_split
from tfp_realnvp.data.resizing import center_crop_resize_pil

__all__ = [
    "IMAGE_SUFFIXES",
    "list_image_files",
    "load_idx_dir",
    "load_image_folder",
    "load_npz",
    "read_idx",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File suffixes (compared in lower case) that image folders are read from."""

# IDX type codes -> big-endian NumPy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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


def is_idx_dir(directory: Path) -> bool:
    """Whether ``directory`` holds MNIST-style IDX image files (see :func:`load_idx_dir`).

    Args:
        directory: an existing directory.

    Returns:
        ``True`` when a train or test ``*-images-idx3-ubyte[.gz]`` file is in it.
    """
    return any(_find_idx(directory, s, "images", 3) for s in ("train", "test"))


def load_idx_dir(directory: PathLike, *, split: str = "train") -> tuple[np.ndarray, np.ndarray | None]:
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
    check_split(split)
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
        raise FileNotFoundError(f"no {split} images in {str(directory)!r}; looked for {tried}.")
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
        key = npz_image_key(path, list(archive.files), key)
        array = archive[key]
    return check_images(array, name=f"{path.name}[{key!r}]")


def npz_image_key(path: Path, keys: list[str], key: str | None) -> str:
    """The array of a ``.npz`` file that holds the images (the rule of :func:`load_npz`).

    Args:
        path: the file, for error messages.
        keys: the names of the arrays in the file.
        key: the requested array, or ``None`` to pick the only array, else the first of
            ``"images"``, ``"image"``, ``"x"``, ``"arr_0"`` in ``keys``.

    Returns:
        The name of the array to read.

    Raises:
        ValueError: naming the path and its keys when ``key`` is not among them, or
            when ``key`` is ``None`` and no array can be chosen.
    """
    if key is None:
        if len(keys) == 1:
            return keys[0]
        key = next((k for k in ("images", "image", "x", "arr_0") if k in keys), None)
        if key is None:
            raise ValueError(f"cannot tell which array of {str(path)!r} holds the images; pass key= one of {keys}.")
    elif key not in keys:
        raise ValueError(f"{str(path)!r} has no array {key!r}; its keys are {keys}.")
    return key


def list_image_files(directory: PathLike) -> list[Path]:
    """Every PNG/JPEG file under ``directory``, recursively, sorted by path.

    Only the names are listed (nothing is opened), so this is cheap next to decoding
    and its memory grows with the number of files, not with their pixels.

    Args:
        directory: the folder.

    Returns:
        The files whose suffix is in :data:`IMAGE_SUFFIXES` (any case), sorted.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: naming the folder when it holds no image file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder not found: {str(directory)!r}.")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found under {str(directory)!r}.")
    return files


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

    target = check_size(image_size, name="image_size")
    directory = Path(directory)
    files = list_image_files(directory)
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
    arrays = [np.asarray(center_crop_resize_pil(im, target), dtype=np.uint8) for im in pil_images]
    images = np.stack(arrays)
    return check_images(images, name=str(directory))
