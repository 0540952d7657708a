"""Per-image statistics for out-of-distribution scores, and the densities fitted to them.

``scale_statistics`` (backend tensors, compiled and exported) splits ``log p(x)`` of a
multi-scale flow by scale (``tfp_realnvp.bijectors.scale_terms``) and summarises each
image by

* ``bits_per_dim``: ``-log p(x) / (D ln 2)``;
* ``preprocess``: ``-log|det|`` of the logit step, per dimension, in bits;
* per scale ``l``: ``scale{l}_bits_per_dim = -(log_det_l + sum_{i in l} log p_base(z_i)) / (D_l ln 2)``,
  the scale's own share of ``-log p(x)`` in bits per latent dimension ``D_l`` of that
  scale, and ``scale{l}_latent_sq = ||z_l||^2 / D_l`` (the mean squared latent after the
  base's standardisation: ``((z - mu) / sigma)^2`` for a class-conditional base).

``compressed_bits_per_dim`` (NumPy) is the length of a lossless code of each image, in
bits per dimension; ``GaussianFit`` is the full-covariance Gaussian fitted to the
training images' statistics (the DoSE score's density); ``orientation_rows`` compares the
statistics of an image with those of its turned copies and ``LogisticFit`` is the
logistic regression that ``"orientation_odds"`` fits to them.
"""

from __future__ import annotations

import bz2
import io
import lzma
import math
import zlib

import numpy as np
from keras import ops

from tfp_realnvp.bijectors.scale_terms import scale_terms

#: Lossless coders of ``compressed_bits_per_dim``: PNG (PIL, zlib level 9 with PNG's
#: row filters), and the standard library's zlib, bz2 and lzma (raw LZMA2) on the raw pixel bytes.
COMPRESSORS = ("png", "zlib", "bz2", "lzma")

_LN2 = math.log(2.0)


def statistic_names(num_scales: int) -> tuple[str, ...]:
    """The names of ``scale_statistics``' columns for a flow of ``num_scales`` scales."""
    names = ["bits_per_dim", "preprocess"]
    for scale in range(num_scales):
        names += [f"scale{scale}_bits_per_dim", f"scale{scale}_latent_sq"]
    return tuple(names)


def _base_log_density(model, z, context):
    """Elementwise ``log p_base(z_i)`` and the standardised ``((z - mu) / sigma)^2``."""
    if context is not None and model.prior is not None:
        loc, scale = model.prior.loc_and_scale(context)
        u = (z - ops.cast(loc, "float32")) / ops.cast(scale, "float32")
        return -0.5 * u**2 - ops.log(ops.cast(scale, "float32")) - 0.5 * math.log(2 * math.pi), u**2
    return -0.5 * z**2 - 0.5 * math.log(2 * math.pi), z**2


def scale_statistics(model, pixels, labels=None, log_q=None):
    """The per-image statistics named by ``statistic_names``, float32 ``[N, F]``.

    Args:
        model: a ``RealNVP``.
        pixels: continuous pixels ``[N, H, W, C]``, backend tensor (the model's
            ``_pixels`` of integer images: dequantized with the per-image evaluation
            noise, as in ``log_prob``).
        labels: int ``[N]`` for a class-conditional model, else ``None``.
        log_q: ``log q(u | x)`` ``[N]`` of a variationally dequantized model (its
            ``bits_per_dim`` is the bound ``-(log p(x + u) - log q(u | x)) / (D ln 2)``),
            else ``None``; only the ``bits_per_dim`` column includes it.

    Returns:
        ``[N, 2 + 2 * num_scales]``, columns as ``statistic_names``; the first is
        ``bits_per_dim`` (equal to ``model.bits_per_dim`` up to float rounding).
    """
    x = pixels
    context = None if labels is None else model.context(labels)
    terms = scale_terms(model.flow, x, training=False, conditional_input=context)
    z = ops.cast(terms.latent, "float32")
    log_base, squared = _base_log_density(model, z, context)
    num_dims = float(model.num_dims)
    columns = []
    total = ops.cast(terms.preprocess_log_det, "float32")
    for scale, log_det in enumerate(terms.log_dets):
        mask = ops.cast(ops.equal(terms.scale_index, float(scale)), "float32")
        dims = ops.sum(mask)
        log_p = ops.cast(log_det, "float32") + ops.sum(log_base * mask, axis=(1, 2, 3))
        total = total + log_p
        columns += [-log_p / (dims * _LN2), ops.sum(squared * mask, axis=(1, 2, 3)) / dims]
    if log_q is not None:
        total = total - ops.cast(log_q, "float32")
    preprocess = -ops.cast(terms.preprocess_log_det, "float32") / (num_dims * _LN2)
    return ops.stack([-total / (num_dims * _LN2), preprocess, *columns], axis=-1)


def _png_bytes(image: np.ndarray) -> int:
    from PIL import Image

    pixels = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=9)
    return buffer.tell()


# LZMA2 at its strongest setting with a small dictionary: one image is far smaller than
# the default dictionary, whose allocation would dominate the time per image.
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 16}]

_CODERS = {
    "png": _png_bytes,
    "zlib": lambda image: len(zlib.compress(image.tobytes(), 9)),
    "bz2": lambda image: len(bz2.compress(image.tobytes(), 9)),
    "lzma": lambda image: len(lzma.compress(image.tobytes(), format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)),
}


def upside_down(images):
    """The two ways ``"orientation"`` turns ``[N, H, W, C]`` images upside down: the
    vertical flip and the half-turn (backend tensors)."""
    flipped = ops.flip(images, axis=1)
    return flipped, ops.flip(flipped, axis=2)


def orientation_score(bits, turned_bits, num_dims: int):
    """``-log P(upright | x)`` from bits/dim, on backend tensors.

    With equal priors on the image and its turned versions ``T x``,
    ``P(upright | x) = p(x) / (p(x) + sum_T p(T x))``, and
    ``log p(T x) - log p(x) = D ln 2 (bpd(x) - bpd(T x))``, so the score is
    ``logsumexp(0, D ln 2 (bpd(x) - bpd(T x)) for each T)``: ``log 3`` for an image
    as likely upside down, near 0 for one the flow finds far likelier upright.

    Args:
        bits: ``[N]`` bits/dim of the images.
        turned_bits: one ``[N]`` per turned version (``upside_down``).
        num_dims: ``D``, the dimensions of one image.
    """
    scale = np.float32(math.log(2.0) * num_dims)
    log_ratios = ops.stack([scale * (bits - other) for other in turned_bits])
    # softplus(s) = log(1 + e^s): keeps the tiny scores of images surely upright (e^-40 is
    # a float32 number; 1 + e^-40 is not), which rank them among themselves.
    return ops.softplus(ops.logsumexp(log_ratios, axis=0))


def orientation_rows(features, turned_features):
    """``[N, 2F]``: the ``scale_statistics`` of images minus those of each of their
    ``upside_down`` versions, ``[s(x) - s(Vx), s(x) - s(Rx)]`` (NumPy or backend tensors).

    Each column compares one statistic of the image (its bits/dim, a scale's share of
    ``-log p``, a scale's mean squared latent) with the same statistic of a turned copy
    that shares every local pattern, so what the rows carry is how the flow's view of
    the image changes with its orientation, scale by scale.
    """
    stack = np.concatenate if isinstance(features, np.ndarray) else ops.concatenate
    return stack([features - other for other in turned_features], axis=-1)


class LogisticFit:
    """A logistic regression ``log-odds(r) = w . r + b``, fitted by Newton's method with an
    L2 penalty ``l2 / 2 ||w'||^2`` on the weights ``w'`` of the standardised columns (the
    bias is not penalised); ``w`` and ``b`` are those weights in the units of ``r``.

    Args:
        weights: ``w``, ``[F]``.
        bias: ``b``.
    """

    def __init__(self, weights, bias):
        self.weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        self.bias = float(bias)

    @classmethod
    def fit(cls, rows: np.ndarray, targets: np.ndarray, *, l2: float = 1e-3, max_steps: int = 100) -> LogisticFit:
        """Fits ``P(target = 1 | row) = sigmoid(w . row + b)`` to ``rows`` ``[N, F]`` and
        ``targets`` ``[N]`` of 0 and 1 (both present), minimising the mean negative
        log-likelihood plus the penalty; stops when a Newton step moves no weight by
        more than ``1e-10``."""
        rows = np.asarray(rows, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if rows.ndim != 2 or len(rows) != len(targets) or not np.all(np.isfinite(rows)):
            raise ValueError(
                f"fitting needs finite rows [N, F] and N targets; received shapes {rows.shape}, {targets.shape}."
            )
        if not set(np.unique(targets)) == {0.0, 1.0}:
            raise ValueError(f"targets must hold both 0 and 1 and nothing else; received {np.unique(targets)[:5]}.")
        mean, scale = rows.mean(axis=0), np.maximum(rows.std(axis=0), 1e-12)
        design = np.concatenate([(rows - mean) / scale, np.ones((len(rows), 1))], axis=1)
        penalty = np.diag(np.r_[np.full(rows.shape[1], l2), 0.0])
        theta = np.zeros(design.shape[1])
        for _ in range(max_steps):
            probability = 0.5 * (1.0 + np.tanh(0.5 * (design @ theta)))  # sigmoid, overflow-free
            gradient = design.T @ (probability - targets) / len(rows) + penalty @ theta
            hessian = (design.T * (probability * (1.0 - probability))) @ design / len(rows) + penalty
            step = np.linalg.solve(hessian + 1e-12 * np.eye(len(theta)), gradient)
            theta -= step
            if np.max(np.abs(step)) < 1e-10:
                break
        weights = theta[:-1] / scale
        return cls(weights, theta[-1] - float(weights @ mean))

    def log_odds(self, rows):
        """``w . r + b`` per row, on NumPy arrays (float32) or backend tensors (float32)."""
        if isinstance(rows, np.ndarray):
            return (rows.astype(np.float64) @ self.weights + self.bias).astype(np.float32)
        weights = ops.convert_to_tensor(self.weights.astype(np.float32))
        return ops.sum(ops.cast(rows, "float32") * weights, axis=-1) + np.float32(self.bias)


def empirical_log_tail(reference: np.ndarray, values: np.ndarray, *, bandwidth: float = 0.1) -> np.ndarray:
    """``-log P(R >= v)`` for each value ``v``, ``R`` the ``reference`` sample smoothed
    by a logistic kernel: ``(sum_i sigmoid((r_i - v) / bandwidth) + 1) / (n + 1)``
    (the one added to both counts keeps it finite beyond the sample), float64 ``[N]``.

    The smoothing makes the tail continuous in ``v``, so that scores a rounding error
    apart (computed in other batches) get tails that are as close; a step function
    would jump where many reference values sit together.
    """
    reference = np.asarray(reference, dtype=np.float64).reshape(1, -1)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    counts = np.empty(len(values))
    for start in range(0, len(values), 1024):  # [1024, n] at a time
        z = (reference - values[start : start + 1024, None]) / bandwidth
        counts[start : start + 1024] = np.sum(0.5 * (1.0 + np.tanh(0.5 * z)), axis=1)  # sigmoid, overflow-free
    return -np.log((counts + 1.0) / (reference.shape[1] + 1.0))


def calibrated_log_tail(reference: np.ndarray, values, *, tail_fraction: float = 0.05, bandwidth: float = 0.05):
    """``-log P(R >= v)`` for each value ``v``, ``R`` distributed as the ``reference``
    sample: a p-value on the ``-log`` scale, which is ``Exp(1)`` for values drawn like the
    reference, whatever the reference's distribution. float64 ``[N]`` for NumPy
    ``values``; float32 ``[N]`` for backend tensors (the reference becomes constants of
    the graph, so an exported model computes it too).

    Up to the threshold ``u``, the reference's upper ``tail_fraction`` quantile, it is
    ``empirical_log_tail`` with a kernel of ``bandwidth`` reference standard deviations.
    Beyond ``u`` (peaks over threshold) the excesses are taken as exponential, with the
    mean excess ``beta`` of the reference values above ``u``:
    ``-log P(R >= v) = -log P(R >= u) + (v - u) / beta``. The tail stays continuous
    and increasing, and it keeps growing beyond the sample where the empirical tail
    alone would stop at ``log(n + 1)`` and tie every far value.

    Raises:
        ValueError: for fewer than 3 reference values or a ``tail_fraction`` outside
            ``(0, 1)``, naming them.
    """
    reference = np.sort(np.asarray(reference, dtype=np.float64).reshape(-1))
    if len(reference) < 3:
        raise ValueError(f"calibrated_log_tail needs at least 3 reference values; received {len(reference)}.")
    if not 0.0 < tail_fraction < 1.0:
        raise ValueError(f"tail_fraction must lie strictly between 0 and 1; received {tail_fraction!r}.")
    width = bandwidth * max(float(np.std(reference)), 1e-12)
    count = min(max(int(round(tail_fraction * len(reference))), 2), len(reference) - 1)
    threshold = reference[-count - 1]
    mean_excess = max(float(np.mean(reference[-count:] - threshold)), width)
    at_threshold = empirical_log_tail(reference, [threshold], bandwidth=width)[0]
    if ops.is_tensor(values):  # a backend tensor: graph-friendly ops
        values = ops.reshape(ops.cast(values, "float32"), (-1,))
        counts = ops.zeros_like(values)
        for start in range(0, len(reference), 1024):  # [N, 1024] at a time, as in NumPy
            chunk = ops.convert_to_tensor(reference[start : start + 1024].astype(np.float32))
            counts = counts + ops.sum(ops.sigmoid((chunk[None, :] - values[:, None]) / np.float32(width)), axis=1)
        inside = -ops.log((counts + 1.0) / np.float32(len(reference) + 1))
        beyond = np.float32(at_threshold) + (values - np.float32(threshold)) / np.float32(mean_excess)
        return ops.where(values > np.float32(threshold), beyond, inside)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    inside = empirical_log_tail(reference, values, bandwidth=width)
    return np.where(values > threshold, at_threshold + (values - threshold) / mean_excess, inside)


def check_compressor(compressor: str) -> str:
    """``compressor`` if it is one of ``COMPRESSORS``; else a ``ValueError`` naming it."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor must be one of {list(COMPRESSORS)}; received {compressor!r}.")
    return compressor


def compressed_bits_per_dim(images: np.ndarray, compressor: str = "png") -> np.ndarray:
    """Length of each image's lossless code, ``8 * bytes / (H W C)``, float32 ``[N]``.

    The pixels are coded as 8-bit integers (values are floored and clipped to
    ``[0, 255]``); the code includes the container's fixed overhead (PNG's chunks,
    the stream headers), which is the same for every image of a shape.

    Args:
        images: ``[N, H, W, C]`` in ``[0, 256)``; ``C`` of 1 or 3 for ``"png"``.
        compressor: one of ``COMPRESSORS``.
    """
    coder = _CODERS[check_compressor(compressor)]
    images = np.asarray(images)
    pixels = np.clip(np.floor(images), 0, 255).astype(np.uint8)
    dims = int(np.prod(pixels.shape[1:]))
    return np.asarray([8.0 * coder(image) / dims for image in pixels], dtype=np.float32)


class GaussianFit:
    """A full-covariance Gaussian ``N(mu, Sigma)`` fitted to rows of statistics.

    ``Sigma`` is the sample covariance plus ``ridge * mean(diag(Sigma))`` on the
    diagonal, so that a statistic that barely varies (or two that move together) keeps
    the precision finite. ``negative_log_density(f) = 0.5 (f - mu)^T Sigma^-1 (f - mu)
    + 0.5 log det(2 pi Sigma)``.

    Args:
        mean: ``[F]``.
        precision: ``Sigma^-1``, ``[F, F]``.
        log_normalizer: ``0.5 log det(2 pi Sigma)``.
    """

    def __init__(self, mean, precision, log_normalizer):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.precision = np.asarray(precision, dtype=np.float64)
        self.log_normalizer = float(log_normalizer)

    @classmethod
    def fit(cls, rows: np.ndarray, *, ridge: float = 1e-4) -> GaussianFit:
        """Fits the Gaussian to ``rows`` ``[N, F]`` (``N >= 2``)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or len(rows) < 2 or not np.all(np.isfinite(rows)):
            raise ValueError(f"fitting needs at least 2 finite rows of statistics; received shape {list(rows.shape)}.")
        mean = rows.mean(axis=0)
        covariance = np.cov(rows, rowvar=False).reshape(len(mean), len(mean))
        covariance += np.eye(len(mean)) * ridge * max(float(np.mean(np.diag(covariance))), 1e-12)
        sign, log_det = np.linalg.slogdet(2 * math.pi * covariance)
        return cls(mean, np.linalg.inv(covariance), 0.5 * log_det)

    def negative_log_density(self, rows):
        """``-log N(f; mu, Sigma)`` per row, on NumPy arrays or backend tensors (float32)."""
        if isinstance(rows, np.ndarray):
            centred = rows.astype(np.float64) - self.mean
            return (0.5 * np.einsum("nf,fg,ng->n", centred, self.precision, centred) + self.log_normalizer).astype(
                np.float32
            )
        centred = ops.cast(rows, "float32") - ops.convert_to_tensor(self.mean.astype(np.float32))
        quadratic = ops.sum(ops.matmul(centred, ops.convert_to_tensor(self.precision.astype(np.float32))) * centred, -1)
        return 0.5 * quadratic + np.float32(self.log_normalizer)
