"""``RealNVP``'s inference API: densities, bits/dim, encode and decode, on NumPy and on tensors.

The NumPy methods (``log_prob``, ``bits_per_dim``, ``encode``, ``decode``) check what
they receive and run one compiled function per method over batches of ``batch_size``;
the ``*_tensor`` methods are the functions they compile, for graphs and exports.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.validation import as_image_batch
from tfp_realnvp.model.dequantization import noise_seed_keys, noise_seeds


class InferenceMixin:
    """``RealNVP`` methods that evaluate the trained flow, batch norm in inference mode.

    The model provides ``image_shape``, ``_pixels`` (dequantization), the flow's
    inference passes ``_inverse_pass`` (``(z, log p)``) and ``_forward_pass``, traced
    once and shared by every graph, ``_compiled_fn`` (compiled functions, one per key),
    ``check_labels`` and ``to_bits_per_dim``.
    """

    def _image_batch(self, images) -> np.ndarray:
        """``images`` as a checked NumPy ``[N, H, W, C]`` batch with ``N >= 1``."""
        arr = np.asarray(keras.ops.convert_to_numpy(images))
        if arr.size == 0:
            raise ValueError(f"images must hold at least one image; received shape {list(arr.shape)}.")
        return as_image_batch(arr, image_shape=self.image_shape)

    def _batched(self, key, fn, inputs, batch_size: int) -> np.ndarray:
        """``fn`` compiled once and run over ``inputs`` (an array, or a tuple of arrays of
        one length, each passed as an argument) in slices of ``batch_size``.

        Where every new shape compiles anew (JAX), a shorter slice is padded (its last
        row repeated) to the next power of two, at most ``batch_size``, so calls of any
        length compile a few versions at most; the padded rows are dropped.
        """
        batch_size = check_int(batch_size, name="batch_size")
        arrays = tuple(inputs) if isinstance(inputs, tuple) else (inputs,)
        if len(arrays[0]) == 0:
            raise ValueError(f"received an empty batch of shape {list(arrays[0].shape)}.")
        compiled = self._compiled_fn(key, fn)
        outs = []
        for start in range(0, len(arrays[0]), batch_size):
            chunk = tuple(a[start : start + batch_size] for a in arrays)
            rows = len(chunk[0])
            if not compiled.shape_polymorphic:
                chunk = tuple(_padded(a, _bucket(rows, batch_size)) for a in chunk)
            outs.append(keras.ops.convert_to_numpy(compiled(*chunk))[:rows])
        return np.concatenate(outs, axis=0)

    def log_prob(self, images, labels=None, *, samples: int = 1, batch_size: int = 256) -> np.ndarray:
        """``log p(x)`` (conditional model: ``log p(x | y)``) in nats per image, batch
        norm in inference mode.

        For integer images this is a lower bound of the discrete log-likelihood
        ``log P(x) = log ∫ p(x + u) du`` over ``u`` in ``[0, 1)^D``: with ``samples=K``,
        the importance-weighted bound

            log (1/K) sum_k p(x + u_k) / q(u_k | x),   u_k ~ q(. | x),

        (``q = 1`` under uniform dequantization), computed with logsumexp in float64.
        Its expectation rises towards ``log P(x)`` as ``K`` grows (Burda et al. 2016).
        The draws are seeded per image (``dequantization.noise_seeds``): draw ``k``
        depends only on the image and ``k``, draw 0 is the noise of ``samples=1``, so
        the values do not depend on ``batch_size`` or on the other images.

        Args:
            images: ``[N, H, W, C]`` (or one ``[H, W, C]`` image) in ``[0, 256)``.
                Integer images are dequantized with ``dequantization_noise``; float
                images are evaluated as they are (then ``samples`` must be 1).
            labels: for a class-conditional model, integer labels ``[N]`` in
                ``[0, num_classes)`` (or one int for all); ``None`` otherwise.
            samples: ``K``, importance samples per image (>= 1).
            batch_size: images per compiled call (with ``K > 1``: flow evaluations,
                ``images * K``, per call, at least one image).

        Returns:
            float32 ``[N]``.

        Raises:
            ValueError: naming the shape, value range, labels, ``samples`` or
                ``batch_size`` received.
        """
        samples = check_int(samples, name="samples")
        images = self._image_batch(images)
        labels = self.check_labels(labels, len(images))
        if samples > 1:
            return self._importance_weighted(images, labels, samples, batch_size)
        if labels is None:
            return self._batched("log_prob", lambda x: self(x, training=False), images, batch_size)
        return self._batched("log_prob_labels", lambda x, y: self((x, y), training=False), (images, labels), batch_size)

    def bits_per_dim(self, images, labels=None, *, samples: int = 1, batch_size: int = 256) -> np.ndarray:
        """Bits per dimension per image, ``-log p(x) / (D ln 2)`` (conditional model:
        ``-log p(x | y) / (D ln 2)``); with ``samples=K`` the importance-weighted bound
        of ``log_prob``, an upper bound of the discrete data's bits/dim in expectation."""
        return self.to_bits_per_dim(self.log_prob(images, labels, samples=samples, batch_size=batch_size))

    def _importance_weighted(self, images: np.ndarray, labels, samples: int, batch_size: int) -> np.ndarray:
        """``log (1/K) sum_k w_k`` per image (logsumexp in float64) of ``importance_log_weights``."""
        log_w = self.importance_log_weights(images, labels, samples=samples, batch_size=batch_size)
        return log_mean_exp(log_w).astype(np.float32)

    def importance_log_weights(self, images, labels=None, *, samples: int, batch_size: int = 256) -> np.ndarray:
        """``log p(x + u_k) - log q(u_k | x)`` of draws ``k = 0 .. K-1`` per image, float32 ``[K, N]``.

        The draws of ``log_prob(images, samples=K)``: draw ``k`` depends only on the
        image and ``k``, so the first ``K'`` rows are the draws of ``samples=K'`` and
        ``log_mean_exp(weights[:K'])`` is that bound. Batch norm in inference mode.

        Args:
            images: integer ``[N, H, W, C]`` (or one image) in ``[0, 256)``.
            labels: for a class-conditional model, integer labels ``[N]`` (or one int).
            samples: ``K`` (>= 1).
            batch_size: flow evaluations per compiled call (at least one image's ``K``
                draws, up to ``batch_size`` of them).

        Raises:
            ValueError: for float images, or bad images, labels, ``samples`` or ``batch_size``.
        """
        samples = check_int(samples, name="samples")
        batch_size = check_int(batch_size, name="batch_size")
        images = self._image_batch(images)
        labels = self.check_labels(labels, len(images))
        if not np.issubdtype(images.dtype, np.integer):
            raise ValueError(
                f"samples={samples} needs integer images (the draws dequantize them); received dtype {images.dtype}."
            )
        per_call = min(samples, batch_size)
        rows_per_call = max(1, batch_size // per_call)
        keys = noise_seed_keys(noise_seeds(samples))
        keys = _padded(keys, -(-samples // per_call) * per_call)
        compiled = self._compiled_fn("log_weights" if labels is None else "log_weights_labels", self.log_weights_tensor)
        out = []
        for start in range(0, len(images), rows_per_call):
            stop = start + rows_per_call
            chunk = [images[start:stop]] + ([] if labels is None else [labels[start:stop]])
            rows = len(chunk[0])
            if not compiled.shape_polymorphic:
                chunk = [_padded(a, _bucket(rows, rows_per_call)) for a in chunk]
            log_w = [
                keras.ops.convert_to_numpy(compiled(chunk[0], keys[k : k + per_call], *chunk[1:]))
                for k in range(0, len(keys), per_call)
            ]
            out.append(np.concatenate(log_w, axis=0)[:samples, :rows])
        return np.concatenate(out, axis=1).astype(np.float32)

    def encode_tensor(self, images, labels=None):
        """``z = f(x)`` on backend tensors, for compiled functions and exported graphs.

        Args:
            images: ``[N, H, W, C]`` tensor; integer images are dequantized with the
                seeded per-image noise (``tfp_realnvp.model.dequantization``), float images
                are taken as they are. Not checked: ``encode`` checks NumPy input.
            labels: int32 ``[N]`` for a conditional model, else ``None``.

        Returns:
            float32 latents ``[N, H, W, C]`` (batch norm in inference mode).
        """
        x = self._pixels(images, training=False)
        return self._inverse_pass(x, None if labels is None else self.context(labels))[0]

    def decode_tensor(self, z, labels=None):
        """uint8 images ``clip(floor(g(z)), 0, 255)`` on backend tensors (see ``decode``).

        Args:
            z: latents ``[N, H, W, C]``; not checked for finiteness here.
            labels: int32 ``[N]`` for a conditional model, else ``None``.
        """
        z = ops.cast(z, "float32")
        x = self._forward_pass(z, None if labels is None else self.context(labels))
        return ops.cast(ops.clip(ops.floor(x), 0.0, 255.0), "uint8")

    def encode(self, images, labels=None, *, batch_size: int = 256) -> np.ndarray:
        """Latent ``z = f(x)`` (conditional: ``f(x; y)``), the flow's ``inverse``, batch
        norm in inference mode.

        Args:
            images: as for ``log_prob``; integer images are dequantized first, so
                ``decode(encode(x)) == x`` for integer ``x`` (with the same labels).
            labels: for a class-conditional model, integer labels ``[N]`` (or one int).
            batch_size: images per compiled call.

        Returns:
            float32 ``[N, H, W, C]``.
        """
        images = self._image_batch(images)
        labels = self.check_labels(labels, len(images))
        if labels is None:
            return self._batched("encode", self.encode_tensor, images, batch_size)
        return self._batched("encode_labels", self.encode_tensor, (images, labels), batch_size)

    def decode(self, z, labels=None, *, batch_size: int = 256) -> np.ndarray:
        """uint8 images ``floor(g(z))`` (conditional: ``g(z; y)``) clipped to ``[0, 255]``
        (the flow's ``forward``).

        Args:
            z: finite latents ``[N, H, W, C]``.
            labels: for a class-conditional model, integer labels ``[N]`` (or one int).
            batch_size: latents per compiled call.

        Returns:
            uint8 ``[N, H, W, C]``.

        Raises:
            ValueError: for a wrong shape, non-finite values or bad labels, naming them.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 4 or tuple(z.shape[1:]) != self.image_shape:
            raise ValueError(
                f"z must have shape [N, {', '.join(map(str, self.image_shape))}]; received shape {list(z.shape)}."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError(f"z must be finite; received {int(np.sum(~np.isfinite(z)))} NaN or infinite values.")
        labels = self.check_labels(labels, len(z))
        if labels is None:
            return self._batched("decode", self.decode_tensor, z, batch_size)
        return self._batched("decode_labels", self.decode_tensor, (z, labels), batch_size)


def log_mean_exp(log_w: np.ndarray) -> np.ndarray:
    """``log (1/K) sum_k exp(log_w[k])`` over the first axis, in float64."""
    log_w = np.asarray(log_w, dtype=np.float64)
    top = np.max(log_w, axis=0)
    return top + np.log(np.mean(np.exp(log_w - top), axis=0))


def _bucket(rows: int, batch_size: int) -> int:
    """The padded length of a slice of ``rows``: the next power of two, at most ``batch_size``."""
    return min(batch_size, 1 << max(rows - 1, 0).bit_length())


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` with its last row repeated up to ``rows`` rows."""
    missing = rows - len(array)
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])
