"""tfds datasets by name, with the paper's preprocessing for CelebA and LSUN.

tfds downloads and prepares a dataset on first use, which needs network access; pass
``data_dir`` to read a prepared copy. :func:`tfds_key` and :func:`is_tfds_name` need
no TensorFlow; :func:`load_tfds` imports TensorFlow and tensorflow-datasets when called,
and :func:`check_tfds_available` says in one line what to install where they are missing.
Without network access a dataset that is not prepared yet is refused at once (tfds
itself would retry its downloads for minutes).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request
from types import ModuleType
from typing import Any

from tfp_realnvp.data.checks import PathLike, Size, check_size, require_tensorflow
from tfp_realnvp.data.resizing import image_preprocessor, round_to_uint8

__all__ = ["TFDS_DATASETS", "check_tfds_available", "is_tfds_name", "load_tfds", "tfds_key"]

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

# Which entries of TFDS_DATASETS get a preset of resizing.PRESETS.
_TFDS_PRESETS = {"celeb_a": "celeba", "lsun/<category>": "lsun"}

# Where a tfds download starts (its prepared copies on Google Cloud Storage), probed
# before a download so that a machine without network hears so at once.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)
_PROBE_SECONDS = 10.0


def _require_tfds(name: str) -> ModuleType:
    """Imports tensorflow-datasets to read the tfds dataset ``name``, or says what to install.

    Returns:
        The ``tensorflow_datasets`` module.

    Raises:
        ImportError: in one line naming the dataset and what to install, where
            TensorFlow or tensorflow-datasets is not installed (tensorflow-datasets
            needs TensorFlow, on every Keras backend).
    """
    try:
        import tensorflow  # noqa: F401 (tensorflow-datasets needs it)
        import tensorflow_datasets
    except ImportError as error:
        raise ImportError(
            f"the tfds dataset {name!r} is read by tensorflow-datasets, which needs TensorFlow: "
            "pip install tensorflow tensorflow-datasets (the 'tfp-realnvp[tensorflow]' extra), "
            "or pass a local copy of the images (a .npz file, an IDX directory or an image folder)."
        ) from error
    return tensorflow_datasets


def check_tfds_available(name: str, *, data_dir: PathLike | None = None) -> None:
    """Checks, within seconds, that the tfds dataset ``name`` can be read here.

    tensorflow-datasets (and TensorFlow, which it needs) must be installed, and the
    dataset must be prepared in ``data_dir`` or the network must answer (a download
    without network would retry for minutes before failing).

    Args:
        name: a tfds name.
        data_dir: the tfds data directory; ``None`` uses tfds' default.

    Raises:
        ImportError: in one line naming the dataset and what to install.
        ConnectionError: in one line naming the dataset, the directory it is missing
            from and the ``data_dir`` option, when there is no network to download it.
    """
    tensorflow_datasets = _require_tfds(name)
    tf = require_tensorflow()
    _check_prepared_or_online(tensorflow_datasets, tf, name, None if data_dir is None else os.fspath(data_dir))


def _downloads(builder) -> bool:
    """Whether ``builder.download_and_prepare`` is tfds' own, which downloads; under
    ``tfds.testing.mock_data`` it is replaced by one that reads nothing."""
    method = getattr(type(builder), "download_and_prepare", None)
    return getattr(method, "__module__", "").startswith("tensorflow_datasets.core")


def _network_reachable(timeout: float) -> bool:
    """Whether a connection to tfds' download host (or to the HTTPS proxy) opens within ``timeout``."""
    proxy = urllib.request.getproxies().get("https") or urllib.request.getproxies().get("http")
    host, port = _DOWNLOAD_HOST
    if proxy:
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 80
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _check_prepared_or_online(tensorflow_datasets: ModuleType, tf: ModuleType, name: str, data_dir: str | None):
    """Returns when ``name`` is prepared in ``data_dir`` or the network answers.

    Raises:
        ConnectionError: in one line naming the dataset, its directory and the
            ``data_dir`` option, when the dataset must be downloaded and there is no network.
    """
    builder = tensorflow_datasets.builder(name, data_dir=data_dir)
    if tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")) or not _downloads(builder):
        return
    if _network_reachable(_PROBE_SECONDS):
        return
    raise ConnectionError(
        f"no network: the tfds dataset {name!r} is not prepared in {builder.data_dir} and downloading it "
        "needs network access; pass data_dir, a directory holding a prepared copy, or a local copy of the "
        "images (a .npz file, an IDX directory or an image folder)."
    )


def tfds_key(name: Any) -> str | None:
    """The :data:`TFDS_DATASETS` entry that ``name`` refers to, or ``None``.

    A version suffix (``"cifar10:3.0.2"``) is allowed, and every ``"lsun/<category>"``
    maps to the entry ``"lsun/<category>"``. Only the spelling is checked: a local path
    with the same spelling is the caller's to prefer.

    Args:
        name: a candidate tfds name; anything that is not a string gives ``None``.

    Returns:
        The matching key of :data:`TFDS_DATASETS`, or ``None``.
    """
    if not isinstance(name, str):
        return None
    base = name.split(":", 1)[0]
    if base in TFDS_DATASETS:
        return base
    if base.startswith("lsun/") and len(base) > len("lsun/"):
        return "lsun/<category>"
    return None


def is_tfds_name(name: Any) -> bool:
    """Whether ``name`` is a tfds name that :func:`load_tfds` knows (see :func:`tfds_key`).

    Args:
        name: a candidate tfds name.

    Returns:
        ``True`` when :func:`tfds_key` finds an entry for it.
    """
    return tfds_key(name) is not None


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
    :func:`~tfp_realnvp.data.celeba_preprocess` and LSUN categories (``"lsun/bedroom"``,
    ...) get :func:`~tfp_realnvp.data.lsun_preprocess` with center crops, so every epoch
    sees the same images. A version suffix (``"cifar10:3.0.2"``) is passed on to tfds.
    tfds downloads and prepares the data on first use (network access needed); pass
    ``data_dir`` to use a prepared copy.

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
        ImportError: where TensorFlow or tensorflow-datasets is missing (see
            :func:`check_tfds_available`).
        ConnectionError: when the dataset is not prepared in ``data_dir`` and there is
            no network to download it (within seconds, naming both).
    """
    known = tfds_key(name)
    if known is None:
        raise ValueError(
            f"unknown tfds dataset {name!r}; known names: {sorted(TFDS_DATASETS)} "
            "(lsun takes any category, e.g. 'lsun/bedroom')."
        )
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a tfds split string such as 'train'; received {split!r}.")
    size = check_size(image_size, name="image_size")
    tensorflow_datasets = _require_tfds(name)
    tf = require_tensorflow()
    data_dir = None if data_dir is None else os.fspath(data_dir)
    _check_prepared_or_online(tensorflow_datasets, tf, name, data_dir)
    dataset = tensorflow_datasets.load(name, split=split, data_dir=data_dir, shuffle_files=shuffle_files)
    preprocess = image_preprocessor(_TFDS_PRESETS.get(known), size)

    def select(example):
        image = tf.convert_to_tensor(example["image"])
        if image.dtype != tf.uint8:
            image = round_to_uint8(tf.cast(image, tf.float32))
        return image if preprocess is None else preprocess(image)

    dataset = dataset.map(select, num_parallel_calls=tf.data.AUTOTUNE)
    if not dataset.element_spec.shape.is_fully_defined():
        raise ValueError(
            f"tfds dataset {name!r} gives images of unknown shape "
            f"{dataset.element_spec.shape}; pass image_size= to fix it."
        )
    return dataset
