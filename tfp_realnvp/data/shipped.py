"""The shipped set: the 10,000 Fashion-MNIST test images inside the package.

The file ``tfp_realnvp/data_files/fashion_mnist_test.npz`` makes the package train and
test with no download; ``data_files/README.md`` says where it comes from.
"""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np

from tfp_realnvp.data.checks import Size, check_size, check_split, check_train_fraction, split_indices
from tfp_realnvp.data.resizing import pad_images

__all__ = ["FASHION_MNIST_CLASSES", "SHIPPED_FILE", "load_shipped"]

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
    check_split(split)
    check_train_fraction(train_fraction)
    target = check_size(pad_to, name="pad_to")
    images, labels = _read_shipped()
    index = split_indices(len(images), split, train_fraction)
    images, labels = images[index], labels[index]
    if target is not None:
        images = pad_images(images, target)
    return images, labels
