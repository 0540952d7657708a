"""Learned embedding of a context vector (one-hot labels or any features) for a conditioner."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.internal.arguments import check_int


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ContextEmbedding(keras.layers.Layer):
    """``e = c W + b``: a context ``[M, K]`` to ``channels`` features, broadcast over an image.

    For a one-hot label ``c = onehot(y)`` the product picks row ``y`` of ``W``: a learned
    per-class embedding. ``call(context, height=h, width=w)`` returns ``[M, h, w, channels]``
    (the same features at every pixel), ready to be concatenated to a conditioner's
    input channels.

    Args:
        channels: features per context, >= 1.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_int(channels, name="channels")

    def build(self, input_shape):
        k = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(k, self.channels), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.channels,), initializer="zeros")

    def call(self, context, height: int = 1, width: int = 1):
        e = ops.matmul(ops.cast(context, self.compute_dtype), ops.cast(self.kernel, self.compute_dtype))
        e = e + ops.cast(self.bias, self.compute_dtype)
        return e[:, None, None, :] * ops.ones((1, int(height), int(width), 1), dtype=e.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config
