"""Variational dequantization: a small conditional flow ``q(u | x)`` on ``(0, 1)^D``.

Flow++ (Ho, Chen, Srinivas, Duan, Abbeel 2019) replaces the uniform dequantization
noise by a learned noise distribution ``q(u | x)`` and trains it jointly with the
density ``p`` on the variational bound of the discrete log-likelihood,

    log P(x) = log ∫_{[0,1)^D} p(x + u) du >= E_{u ~ q(. | x)}[log p(x + u) - log q(u | x)],

which is tight when ``q(u | x) = p(x + u) / P(x)``. Uniform dequantization is the case
``q = 1`` on the unit cube.

Here ``u`` is made from uniform base noise ``w`` in ``(0, 1)^D`` (the same noise the
uniform dequantization adds) in three steps:

1. ``e = logit(w)``: standard logistic noise;
2. ``v = T(e; x)``: ``num_steps`` affine couplings whose conditioners read the image
   ``x``. Step ``i`` keeps the entries where its mask ``m_i`` is 1 and maps the others to
   ``v * exp(s) + t`` with ``(s, t) = NN_i([x / 128 - 1, m_i * v, m_i])`` and
   ``s = scale * tanh(raw)``. The first mask is all zeros (every entry moves, conditioned
   on ``x`` alone); the others are checkerboards of alternating parity;
3. ``u = sigmoid(v)``.

With ``sigma'(a) = sigmoid(a) sigmoid(-a)`` the change of variables gives

    log q(u | x) = sum log sigma'(e) - sum_i sum (1 - m_i) s_i - sum log sigma'(v),

because the density of ``w`` is 1 and ``dw/de = sigma'(e)``. The couplings' output
convolutions start at zero, so ``T`` starts as the identity, ``u = w`` and
``log q = 0``: a variational model starts as the uniform one.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.validation import check_event_shape
from tfp_realnvp.networks.resnet import ResNetConditioner
from tfp_realnvp.networks.tanh_scale import TanhScale

#: Base noise is kept this far inside ``(0, 1)`` so that ``logit(w)`` stays finite.
BASE_NOISE_MARGIN = 2.0**-24


def log_sigmoid_derivative(a):
    """``log sigma'(a) = log sigmoid(a) + log sigmoid(-a) = -softplus(-a) - softplus(a)``."""
    return -ops.softplus(-a) - ops.softplus(a)


def checkerboard(height: int, width: int, parity: int) -> np.ndarray:
    """``[H, W, 1]`` float32 mask, 1 where ``(row + column + parity)`` is even."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return ((rows + cols + parity) % 2 == 0).astype(np.float32)[..., None]


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class VariationalDequantizer(keras.layers.Layer):
    """``q(u | x)``: maps base noise ``w`` in ``(0, 1)^D`` and images ``x`` to ``u`` and ``log q(u | x)``.

    See the module docstring for the flow. ``call(x, w)`` returns ``(u, log_q)``: ``u``
    of the shape of ``x`` in ``(0, 1)``, ``log_q`` float32 ``[N]`` (nats). The noise is
    reparameterised, so gradients of ``log p(x + u) - log q(u | x)`` reach the weights
    of ``q`` through ``u`` as well as through ``log q``. The conditioners are
    weight-normalized ResNets without batch norm (``q`` has no state besides weights).

    Args:
        image_shape: ``(H, W, C)`` of the images.
        num_steps: affine coupling steps (the first conditioned on ``x`` alone), >= 1.
        num_filters: width of each conditioner.
        num_blocks: residual blocks per conditioner (>= 0).
        **kwargs: forwarded to ``keras.layers.Layer`` (``dtype``, ``name``).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        num_steps: int = 3,
        num_filters: int = 16,
        num_blocks: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = check_event_shape(image_shape, name="image_shape")
        self.num_steps = check_int(num_steps, name="num_steps")
        self.num_filters = check_int(num_filters, name="num_filters")
        self.num_blocks = check_int(num_blocks, name="num_blocks", low=0)
        height, width, channels = self.image_shape
        masks = [np.zeros((height, width, 1), np.float32)]
        masks += [checkerboard(height, width, i % 2) for i in range(self.num_steps - 1)]
        # Constants, kept out of Keras' attribute tracking.
        object.__setattr__(
            self, "_masks", tuple(np.broadcast_to(m, self.image_shape).astype(np.float32) for m in masks)
        )
        for i in range(self.num_steps):
            net = ResNetConditioner(
                channels,
                num_filters=self.num_filters,
                num_blocks=self.num_blocks,
                batch_norm=False,
                dtype=self.dtype_policy,
                name=f"step{i}_net",
            )
            setattr(self, f"step{i}_net", net)
            setattr(self, f"step{i}_scale", TanhScale(dtype=self.dtype_policy, name=f"step{i}_scale"))
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        height, width, channels = self.image_shape
        for i in range(self.num_steps):
            getattr(self, f"step{i}_net").build((None, height, width, 3 * channels))
            getattr(self, f"step{i}_scale").build((None, height, width, channels))
        self.built = True

    def weight_scales(self) -> list:
        """The weight-norm scales ``g`` of every convolution (for L2 regularisation)."""
        return [g for i in range(self.num_steps) for g in getattr(self, f"step{i}_net").weight_scales()]

    def _step(self, i: int, features, v):
        """Coupling step ``i``: the new ``v`` and its log-det ``[N]`` (float32)."""
        mask = ops.convert_to_tensor(self._masks[i], dtype=v.dtype)
        mask = ops.broadcast_to(mask, ops.shape(v))
        compute = self.compute_dtype
        inputs = ops.concatenate([features, mask * v, mask], axis=-1)
        raw = getattr(self, f"step{i}_net")(ops.cast(inputs, compute))
        channels = self.image_shape[-1]
        log_scale = ops.cast(getattr(self, f"step{i}_scale")(raw[..., :channels]), v.dtype)
        shift = ops.cast(raw[..., channels:], v.dtype)
        moved = 1.0 - mask
        v = mask * v + moved * (v * ops.exp(log_scale) + shift)
        return v, ops.sum(moved * log_scale, axis=(1, 2, 3))

    def call(self, x, w):
        """``(u, log q(u | x))`` for images ``x`` (pixel values in ``[0, 256)``) and base noise ``w``.

        Args:
            x: ``[N, H, W, C]`` float pixel values (the integers being dequantized).
            w: ``[N, H, W, C]`` uniform noise in ``[0, 1)`` (clipped ``BASE_NOISE_MARGIN``
                inside the interval).

        Returns:
            ``u`` (the dtype of ``w``, float32 or float64) and ``log_q`` ``[N]``.
        """
        dtype = keras.backend.standardize_dtype(w.dtype)
        if dtype not in ("float32", "float64"):
            dtype = "float32"
        w = ops.clip(ops.cast(w, dtype), BASE_NOISE_MARGIN, 1.0 - BASE_NOISE_MARGIN)
        features = ops.cast(x, dtype) / 128.0 - 1.0
        e = ops.log(w) - ops.log1p(-w)
        log_q = ops.sum(log_sigmoid_derivative(e), axis=(1, 2, 3))
        v = e
        for i in range(self.num_steps):
            v, log_det = self._step(i, features, v)
            log_q = log_q - log_det
        log_q = log_q - ops.sum(log_sigmoid_derivative(v), axis=(1, 2, 3))
        return ops.sigmoid(v), log_q

    def transform(self, x, e):
        """``v = T(e; x)`` and ``sum_i log|det dT_i/de|`` ``[N]``: the couplings alone, for checks."""
        features = ops.cast(x, e.dtype) / 128.0 - 1.0
        total = ops.zeros(ops.shape(e)[:1], dtype=e.dtype)
        for i in range(self.num_steps):
            e, log_det = self._step(i, features, e)
            total = total + log_det
        return e, total

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=list(self.image_shape),
            num_steps=self.num_steps,
            num_filters=self.num_filters,
            num_blocks=self.num_blocks,
        )
        return config
