"""The layers of the plain-Keras Real NVP (``plain_keras.PlainRealNVP``): the squeeze and
its inverse, the affine coupling and the invertible batch norm, written out in
``keras.ops`` without TensorFlow Probability.

The coupling uses the package's conditioner (``ResNetConditioner``) and scale
(``TanhScale``) layers and its checkerboard masks; the batch norm is the package's
batch-norm weights layer (``FlowBatchNormState``) with the transformation written here.
"""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.bijectors.batch_norm import FlowBatchNormState
from tfp_realnvp.bijectors.masks import checkerboard
from tfp_realnvp.internal.moving_stats import channel_moments, update_moving_moments
from tfp_realnvp.networks.resnet import ResNetConditioner
from tfp_realnvp.networks.tanh_scale import TanhScale


def squeeze(x):
    """``[N, H, W, C] -> [N, H/2, W/2, 4C]``; channel ``(2 di + dj) C + c`` holds pixel ``(2i+di, 2j+dj)``."""
    _, h, w, c = x.shape
    y = ops.reshape(x, (-1, h // 2, 2, w // 2, 2, c))
    y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
    return ops.reshape(y, (-1, h // 2, w // 2, 4 * c))


def unsqueeze(y):
    """Inverse of ``squeeze``: ``[N, H, W, 4C] -> [N, 2H, 2W, C]``."""
    _, h, w, c4 = y.shape
    c = c4 // 4
    x = ops.reshape(y, (-1, h, w, 2, 2, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, 2 * h, 2 * w, c))


class Coupling(keras.layers.Layer):
    """Affine coupling ``z_b = y_b * exp(s(y_a)) + t(y_a)`` with one conditioner pass.

    Args:
        mask_type: ``"checkerboard"`` (fixes pixels with ``(i + j) % 2 == parity``) or
            ``"channel"`` (fixes the first half of the channels for parity 0, the second
            for parity 1).
        parity: 0 or 1.
        event_shape: ``(H, W, C)`` of the input.
        num_filters: conditioner width.
        num_blocks: conditioner residual blocks.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    def __init__(self, mask_type: str, parity: int, event_shape, *, num_filters: int, num_blocks: int, **kwargs):
        super().__init__(**kwargs)
        h, w, c = (int(d) for d in event_shape)
        self.mask_type = mask_type
        self.parity = int(parity)
        self.event_shape = (h, w, c)
        c_in = c if mask_type == "checkerboard" else c // 2
        policy = self.dtype_policy
        self.conditioner = ResNetConditioner(
            c_in, num_filters=num_filters, num_blocks=num_blocks, dtype=policy, name="net"
        )
        self.scale = TanhScale(dtype=policy, name="scale")
        self.conditioner.build((None, h, w, c_in))
        self.scale.build((None, h, w, c_in))
        if mask_type == "checkerboard":
            self._mask = checkerboard(h, w, parity=self.parity)
        else:
            self._mask = None
        self.built = True

    def _split(self, x):
        if self.mask_type == "checkerboard":
            return x * ops.cast(self._mask, x.dtype), x
        half = self.event_shape[-1] // 2
        first, second = x[..., :half], x[..., half:]
        return (first, second) if self.parity == 0 else (second, first)

    def _merge(self, fixed, updated):
        if self.mask_type == "checkerboard":
            return updated
        return ops.concatenate([fixed, updated] if self.parity == 0 else [updated, fixed], axis=-1)

    def _scale_and_shift(self, fixed):
        raw_s, t = ops.split(self.conditioner(fixed), 2, axis=-1)
        s = ops.cast(self.scale(raw_s), fixed.dtype)
        t = ops.cast(t, fixed.dtype)
        if self.mask_type == "checkerboard":
            free = 1.0 - ops.cast(self._mask, fixed.dtype)
            s, t = s * free, t * free
        return s, t

    def inverse(self, x):
        """Data to latent: returns ``(z, log|det dz/dx|)`` per example."""
        fixed, updated = self._split(x)
        s, t = self._scale_and_shift(fixed)
        return self._merge(fixed, updated * ops.exp(s) + t), ops.sum(s, axis=(1, 2, 3))

    def forward(self, z):
        """Latent to data (no log-det: sampling does not need it)."""
        fixed, updated = self._split(z)
        s, t = self._scale_and_shift(fixed)
        return self._merge(fixed, (updated - t) * ops.exp(-s))


class BatchNorm(FlowBatchNormState):
    """Invertible per-channel batch normalization with moving averages.

    The weights are those of the package's ``BatchNormalization`` bijector (this layer is
    its weights layer, ``FlowBatchNormState``: ``log_gamma``, ``beta``, ``moving_mean``,
    ``moving_variance``, ``num_updates``); the transformation is written out here.

    ``inverse``: ``z = (y - m) / sqrt(v + eps) * exp(log_gamma) + beta`` with batch
    statistics while training (and a moving-average update by the package's
    warm-started rule, ``tfp_realnvp.internal.moving_stats``), moving averages otherwise;
    ``log|det| = H W sum_c(log_gamma_c - 0.5 log(v_c + eps))``.

    Args:
        momentum: decay of the moving averages.
        epsilon: variance floor.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, *, momentum: float = 0.9, epsilon: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self._hw = float(int(input_shape[-3]) * int(input_shape[-2]))
        self.built = True

    def _log_scale(self, var, dtype):
        return ops.cast(self.log_gamma, dtype) - 0.5 * ops.log(var + self.epsilon)

    def inverse(self, y, training: bool):
        """Data to latent: returns ``(z, log|det dz/dy|)`` per example."""
        dtype = y.dtype
        if training:
            mean, var = channel_moments(y)
            update_moving_moments(
                moving_mean=self.moving_mean,
                moving_variance=self.moving_variance,
                num_updates=self.num_updates,
                mean=mean,
                variance=var,
                momentum=self.momentum,
                what=self.name,
            )
        else:
            mean = ops.cast(self.moving_mean, dtype)
            var = ops.cast(self.moving_variance, dtype)
        log_scale = self._log_scale(var, dtype)
        z = (y - mean) * ops.exp(log_scale) + ops.cast(self.beta, dtype)
        ldj = ops.zeros(ops.shape(y)[:1], dtype=dtype) + ops.sum(log_scale) * self._hw
        return z, ldj

    def forward(self, z):
        """Latent to data with the moving averages."""
        dtype = z.dtype
        mean = ops.cast(self.moving_mean, dtype)
        var = ops.cast(self.moving_variance, dtype)
        return (z - ops.cast(self.beta, dtype)) * ops.exp(-self._log_scale(var, dtype)) + mean
