"""The bits/dim an export records: what the caller gave, checked, and its measurement.

An export records either a number measured elsewhere (``measured_bits_per_dim``) or
the mean bits/dim that the exported ``serving_default`` function itself gives on
``images_for_bpd`` (with ``labels_for_bpd`` for a class-conditional model), or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from tfp_realnvp.internal.arguments import check_number

#: Images per call of the exported ``serving_default`` while measuring bits/dim.
BPD_BATCH_SIZE = 256


class BitsPerDim(NamedTuple):
    """The bits/dim an export records, and where the number came from."""

    #: Mean bits/dim, or ``None`` when none was given or measured.
    value: float | None = None
    #: ``"images_for_bpd"``, ``"measured_bits_per_dim"`` or ``None``.
    source: str | None = None
    #: How many images it was measured on (``images_for_bpd`` only).
    num_images: int | None = None


class BitsPerDimRequest(NamedTuple):
    """What the caller asked to record, checked: a number, or images (and labels) to measure on."""

    measured: float | None = None
    images: np.ndarray | None = None
    labels: np.ndarray | None = None


def _bpd_images(images: Any, image_shape: Sequence[int]) -> np.ndarray:
    """``images_for_bpd`` as a uint8 batch, or ``ValueError`` naming what was received."""
    from tfp_realnvp.internal.validation import as_image_batch

    arr = as_image_batch(images, image_shape=image_shape, name="images_for_bpd")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            "images_for_bpd must hold integer pixel values (the export serves uint8 images); "
            f"received dtype {arr.dtype}."
        )
    if len(arr) == 0:
        raise ValueError(f"images_for_bpd is empty; received shape {list(arr.shape)}.")
    return arr.astype(np.uint8)


def check_bpd_request(
    model: Any, *, measured_bits_per_dim: Any = None, images_for_bpd: Any = None, labels_for_bpd: Any = None
) -> BitsPerDimRequest:
    """Checks the bits/dim arguments of ``export_saved_model`` for ``model``.

    Raises:
        ValueError: for a non-finite ``measured_bits_per_dim``, both it and
            ``images_for_bpd``, images of the wrong shape or dtype, labels that do not fit
            the model or the images, or labels without images; naming what was received.
    """
    measured = check_number(measured_bits_per_dim, name="measured_bits_per_dim", allow_none=True)
    if measured is not None and images_for_bpd is not None:
        raise ValueError("give images_for_bpd or measured_bits_per_dim, not both.")
    if images_for_bpd is None:
        if labels_for_bpd is not None:
            raise ValueError("labels_for_bpd goes with images_for_bpd; received labels_for_bpd without images_for_bpd.")
        return BitsPerDimRequest(measured=measured)
    images = _bpd_images(images_for_bpd, model.image_shape)
    labels = model.check_labels(labels_for_bpd, len(images), name="labels_for_bpd")
    return BitsPerDimRequest(images=images, labels=labels)


def _mean_bits_per_dim(log_prob_fn: Callable, images: np.ndarray, labels: np.ndarray | None) -> float:
    import tensorflow as tf

    total = 0.0
    for start in range(0, len(images), BPD_BATCH_SIZE):
        batch = {"images": tf.constant(images[start : start + BPD_BATCH_SIZE])}
        if labels is not None:
            batch["labels"] = tf.constant(labels[start : start + BPD_BATCH_SIZE], tf.int32)
        bits = log_prob_fn(**batch)["bits_per_dim"]
        total += float(np.sum(bits.numpy(), dtype=np.float64))
    return total / len(images)


def record_bits_per_dim(request: BitsPerDimRequest, log_prob_fn: Callable) -> BitsPerDim:
    """The bits/dim to record for ``request``, measured with the traced ``serving_default``.

    Args:
        request: the checked arguments (:func:`check_bpd_request`).
        log_prob_fn: the ``serving_default`` concrete function of the export.

    Raises:
        ValueError: when the measured number is not finite.
    """
    if request.images is not None:
        bits = _mean_bits_per_dim(log_prob_fn, request.images, request.labels)
        if not math.isfinite(bits):
            raise ValueError(
                f"the exported model gives non-finite bits/dim ({bits}) on images_for_bpd; nothing was exported."
            )
        return BitsPerDim(bits, "images_for_bpd", len(request.images))
    if request.measured is not None:
        return BitsPerDim(request.measured, "measured_bits_per_dim")
    return BitsPerDim()
