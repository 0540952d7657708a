"""Images with their integer class labels, for class-conditional models.

:func:`load_labelled_images` returns ``(images, labels, class_names)`` from the sources
that carry labels:

* ``"shipped"``: the Fashion-MNIST images inside the package and their labels;
* an IDX directory with ``*-labels-idx1-ubyte[.gz]`` files (MNIST / Fashion-MNIST);
* a ``.npz`` file with a label array next to the images: ``y_<split>`` or
  ``labels_<split>`` beside ``x_<split>`` / ``images_<split>``, else ``labels`` or ``y``
  (split like the images by ``train_fraction``);
* an image folder with one subdirectory per class (``root/<class>/...png``): the classes
  are the subdirectory names in sorted order, labelled ``0, 1, ...``;
* a tfds name (its ``label`` feature), materialised up to ``max_images`` images.

Needs no TensorFlow except for tfds names.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfp_realnvp.data.checks import PathLike, Size, check_size, check_split, check_train_fraction, split_indices
from tfp_realnvp.data.local import is_idx_dir, list_image_files, load_idx_dir, load_image_folder, load_npz
from tfp_realnvp.data.resizing import resize_and_pad
from tfp_realnvp.data.shipped import FASHION_MNIST_CLASSES, load_shipped
from tfp_realnvp.data.tfds import tfds_key

__all__ = ["load_labelled_images"]


def _as_labels(labels, count: int, *, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dtype.kind not in "iu" or labels.shape != (count,):
        raise ValueError(
            f"{name} must hold one integer label per image ({count}); received dtype {labels.dtype} "
            f"and shape {list(labels.shape)}."
        )
    if count and labels.min() < 0:
        raise ValueError(f"{name} holds negative labels (minimum {int(labels.min())}).")
    return labels.astype(np.int32)


def _class_names(labels: np.ndarray) -> list[str]:
    return [str(k) for k in range(int(labels.max()) + 1)] if labels.size else []


def _folder_labels(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files under ``root`` (sorted, as ``load_image_folder`` reads them) and the index of
    the class subdirectory each lies in."""
    files = list_image_files(root)
    loose = [f for f in files if f.parent == root]
    if loose:
        raise ValueError(
            f"a labelled image folder holds one subdirectory per class; {str(root)!r} has "
            f"{len(loose)} image file(s) directly inside it (e.g. {loose[0].name!r})."
        )
    classes = sorted({f.relative_to(root).parts[0] for f in files})
    index = {name: k for k, name in enumerate(classes)}
    labels = np.asarray([index[f.relative_to(root).parts[0]] for f in files], dtype=np.int32)
    return files, labels, classes


def _npz_labels(path: Path, split: str, count: int, train_fraction: float, image_key: str | None):
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        if image_key is not None and split != "all":
            label_key = next((k for k in (f"y_{split}", f"labels_{split}") if k in keys), None)
            if label_key is None:
                raise ValueError(
                    f"{str(path)!r} has {image_key!r} but no y_{split} or labels_{split}; its keys are {keys}."
                )
            return _as_labels(archive[label_key], count, name=f"{path.name}[{label_key!r}]")
        label_key = next((k for k in ("labels", "label", "y") if k in keys), None)
        if label_key is None:
            raise ValueError(f"{str(path)!r} holds no labels (an array 'labels' or 'y'); its keys are {keys}.")
        labels = archive[label_key]
    labels = _as_labels(labels, len(labels), name=f"{path.name}[{label_key!r}]")
    return labels[split_indices(len(labels), split, train_fraction)]


def _tfds_labelled(name: str, split: str, *, data_dir, image_size, max_images: int):
    import tensorflow_datasets

    from tfp_realnvp.data.sources import get_dataset

    images = get_dataset(name, split=split, image_size=image_size, data_dir=data_dir)
    raw = tensorflow_datasets.load(name, split=split, data_dir=None if data_dir is None else os.fspath(data_dir))
    if "label" not in raw.element_spec:
        raise ValueError(f"tfds dataset {name!r} has no 'label' feature; its features are {sorted(raw.element_spec)}.")
    labels = raw.map(lambda example: example["label"])
    pairs = list(zip(images.take(max_images).as_numpy_iterator(), labels.take(max_images).as_numpy_iterator()))
    if not pairs:
        raise ValueError(f"tfds dataset {name!r} split {split!r} is empty.")
    x = np.stack([p[0] for p in pairs])
    y = _as_labels(np.asarray([p[1] for p in pairs]), len(pairs), name=f"{name} labels")
    return x, y


def load_labelled_images(
    source: PathLike = "shipped",
    *,
    split: str = "train",
    image_size: Size | None = None,
    pad_to: Size | None = None,
    train_fraction: float = 0.9,
    data_dir: PathLike | None = None,
    max_images: int = 10000,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Loads images and their class labels (see the module docstring for the sources).

    Args:
        source: ``"shipped"``, a path, or a tfds name.
        split: ``"train"``, ``"test"`` or ``"all"`` (tfds: any split string).
        image_size: optional side or ``(height, width)``: center crop + resize.
        pad_to: optional side or ``(height, width)``: zero padding, after resizing.
        train_fraction: the ``"train"`` share of a source without its own splits.
        data_dir: the tfds data directory (tfds names only).
        max_images: the most images read from a tfds split.

    Returns:
        ``(images, labels, class_names)``: ``uint8 [N, H, W, C]``, ``int32 [N]`` and the
        name of each class index.

    Raises:
        FileNotFoundError: naming the path when it does not exist.
        ValueError: naming the source when it carries no labels, or a bad argument.
    """
    check_train_fraction(train_fraction)
    check_size(image_size, name="image_size")
    check_size(pad_to, name="pad_to")
    if isinstance(source, str) and source == "shipped":
        check_split(split)
        images, labels = load_shipped(split=split, train_fraction=train_fraction)
        return resize_and_pad(images, image_size, pad_to), labels.astype(np.int32), list(FASHION_MNIST_CLASSES)
    path = Path(source)
    if path.is_dir():
        check_split(split)
        if is_idx_dir(path):
            images, labels = load_idx_dir(path, split=split)
            if labels is None:
                raise ValueError(f"the IDX directory {str(path)!r} has no labels file for split {split!r}.")
            labels = _as_labels(labels, len(images), name=f"{path} labels")
            return resize_and_pad(images, image_size, pad_to), labels, _class_names(labels)
        files, labels, classes = _folder_labels(path)
        images = load_image_folder(path, image_size=image_size)
        if len(images) != len(files):
            raise ValueError(f"read {len(images)} images for {len(files)} files under {str(path)!r}.")
        index = split_indices(len(images), split, train_fraction)
        return resize_and_pad(images[index], None, pad_to), labels[index], classes
    if path.is_file() and path.suffix.lower() == ".npz":
        check_split(split)
        image_key = None
        if split != "all":
            with np.load(path, allow_pickle=False) as archive:
                image_key = next((k for k in (f"x_{split}", f"images_{split}") if k in archive.files), None)
        if image_key is not None:
            images = load_npz(path, key=image_key)
        else:
            images = load_npz(path)
            images = images[split_indices(len(images), split, train_fraction)]
        labels = _npz_labels(path, split, len(images), train_fraction, image_key)
        if len(labels) != len(images):
            raise ValueError(f"{str(path)!r} holds {len(labels)} labels for {len(images)} images.")
        return resize_and_pad(images, image_size, pad_to), labels, _class_names(labels)
    if isinstance(source, str) and tfds_key(source) is not None and not path.exists():
        images, labels = _tfds_labelled(source, split, data_dir=data_dir, image_size=image_size, max_images=max_images)
        return resize_and_pad(images, None, pad_to), labels, _class_names(labels)
    if path.is_file():
        raise ValueError(
            f"{str(path)!r} carries no labels that tfp_realnvp can read; labelled sources are 'shipped', an IDX "
            "directory with label files, a .npz file with a label array, an image folder with one "
            "subdirectory per class, or a tfds name."
        )
    raise FileNotFoundError(f"no such file or directory: {str(source)!r}.")
