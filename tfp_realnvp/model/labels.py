"""Integer class labels for class-conditional models: checks, fit inputs, Bayes' rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tfp_realnvp.model.inputs import InputKind, classify_fit_input, describe, is_pair


def check_labels(labels: Any, *, num_classes: int, count: int | None = None, name: str = "labels") -> np.ndarray:
    """``labels`` as an int32 NumPy ``[N]`` array of values in ``[0, num_classes)``.

    Args:
        labels: integer labels, array-like ``[N]`` (a Python int counts as one label).
        num_classes: ``K``.
        count: the number of labels expected (the number of images), if known.
        name: named in errors.

    Raises:
        ValueError: naming the received dtype, shape, count or value range.
    """
    arr = np.asarray(labels)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must be integer class labels; received dtype {arr.dtype}.")
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape [N]; received shape {list(arr.shape)}.")
    if count is not None and len(arr) != count:
        raise ValueError(f"{name} must hold one label per image ({count}); received {len(arr)} labels.")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) for num_classes={num_classes}; received values in "
            f"[{int(arr.min())}, {int(arr.max())}]."
        )
    return arr.astype(np.int32)


def check_prior(prior: Any, *, num_classes: int) -> np.ndarray:
    """Class prior ``p(y)`` as float64 ``[K]`` summing to 1 (``None``: uniform).

    Raises:
        ValueError: naming the prior when it is not ``K`` finite non-negative numbers
            with a positive sum.
    """
    if prior is None:
        return np.full(num_classes, 1.0 / num_classes)
    arr = np.asarray(prior, dtype=np.float64)
    if arr.shape != (num_classes,) or not np.all(np.isfinite(arr)) or np.any(arr < 0) or not arr.sum() > 0:
        raise ValueError(
            f"prior must be {num_classes} finite non-negative class probabilities with a positive sum; "
            f"received {prior!r}."
        )
    return arr / arr.sum()


def posterior(class_log_likelihoods: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``p(y | x)`` from ``log p(x | y)`` ``[N, K]`` and ``p(y)`` ``[K]`` by Bayes' rule.

    ``p(y=k | x) = p(x | k) p(k) / sum_j p(x | j) p(j)``, computed in log space,
    ``log p(k | x) = a_k - logsumexp_j a_j`` with ``a_k = log p(x | k) + log p(k)``, so
    likelihoods of thousands of nats neither overflow nor underflow.
    """
    with np.errstate(divide="ignore"):
        a = np.asarray(class_log_likelihoods, dtype=np.float64) + np.log(prior)[None, :]
    top = np.max(a, axis=1, keepdims=True)
    log_norm = top + np.log(np.sum(np.exp(a - top), axis=1, keepdims=True))
    return np.exp(a - log_norm)


def _pairs(batches) -> Iterator[tuple]:
    """Wraps ``(images, labels)`` elements as ``((images, labels),)``: Keras' ``x`` is the pair."""
    for element in batches:
        if isinstance(element, (tuple, list)) and len(element) == 1 and is_pair(element[0]):
            yield tuple(element)
        elif is_pair(element):
            yield ((element[0], element[1]),)
        else:
            raise ValueError(
                "a class-conditional model trains on (images, labels) batches; received an element of "
                f"type {type(element).__name__}."
            )


def _labelled_dataset(dataset):
    """A ``tf.data.Dataset`` of ``(images, labels)`` elements as one of ``((images, labels),)``."""
    spec = dataset.element_spec
    if isinstance(spec, tuple) and len(spec) == 2 and not isinstance(spec[0], tuple):
        return dataset.map(lambda images, labels: ((images, labels),))
    if isinstance(spec, tuple) and len(spec) == 1 and isinstance(spec[0], tuple) and len(spec[0]) == 2:
        return dataset
    raise ValueError(
        f"a class-conditional model trains on a dataset of (images, labels) batches; received element spec {spec}."
    )


def labelled_fit_input(x, y, *, num_classes: int):
    """``(x, y)`` for ``keras.Model.fit``/``evaluate`` with the pair ``(images, labels)`` as ``x``.

    Accepts image and label arrays (``x, y``), a tuple ``(images, labels)`` as ``x``, a
    ``tf.data.Dataset`` of ``(images, labels)`` elements, or a Python iterator of them.
    Arrays are checked here (a label outside ``[0, K)``, or a count that differs from the
    images', is a ``ValueError``).

    Raises:
        ValueError: when labels are missing, naming what was received.
    """
    data = classify_fit_input(x, y)
    if data.kind is InputKind.ARRAYS and y is not None:
        images = np.asarray(x)
        return (images, check_labels(y, num_classes=num_classes, count=len(images))), None
    if data.kind is InputKind.PAIR:
        images = np.asarray(x[0])
        return (images, check_labels(x[1], num_classes=num_classes, count=len(images))), None
    if data.kind is InputKind.DATASET:
        return _labelled_dataset(x), None
    if data.kind is InputKind.ITERATOR:
        return _pairs(x), None
    raise ValueError(
        f"a class-conditional model (num_classes={num_classes}) needs labels: pass fit(images, labels), "
        f"fit((images, labels)), a dataset or a generator of (images, labels); received {data.describe()} "
        "as x and no labels."
    )


def labelled_validation_data(data, *, num_classes: int):
    """``validation_data`` for ``fit``: ``(images, labels)`` arrays or a dataset, as ``labelled_fit_input``."""
    if classify_fit_input(data).kind is InputKind.PAIR:
        x, _ = labelled_fit_input(data[0], data[1], num_classes=num_classes)
        return (x, None)
    x, _ = labelled_fit_input(data, None, num_classes=num_classes)
    return x


def split_model_inputs(inputs: Any, *, num_classes: int | None) -> tuple[Any, Any]:
    """``(images, labels)`` of a ``RealNVP`` call's input.

    An unconditional model (``num_classes=None``) takes images alone, and ``labels`` is
    ``None``; a conditional one takes ``(images, labels)`` or
    ``{"images": ..., "labels": ...}``.

    Raises:
        ValueError: for labels given to an unconditional model, or images without
            labels given to a conditional one, naming what was received.
    """
    if num_classes is None:
        if isinstance(inputs, (tuple, list, dict)):
            raise ValueError(
                "this RealNVP is unconditional (num_classes=None) and takes images only; received "
                f"{describe(inputs)} (labels given to an unconditional model?)."
            )
        return inputs, None
    if isinstance(inputs, dict) and set(inputs) == {"images", "labels"}:
        return inputs["images"], inputs["labels"]
    if is_pair(inputs):
        return inputs[0], inputs[1]
    raise ValueError(
        f"this RealNVP is class-conditional (num_classes={num_classes}) and needs (images, labels); "
        f"received {describe(inputs)} (labels missing?)."
    )
