"""Weight-normalized 2-D convolution (Salimans & Kingma, 2016)."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.internal.arguments import check_int


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class WeightNormConv2D(keras.layers.Layer):
    """A ``same``-padded convolution with kernel ``W = g * v / ||v||``.

    The norm runs over the kernel's spatial and input-channel axes, one ``g`` per
    output channel, so ``g`` alone sets each filter's scale. Real NVP applies L2
    regularisation to these scales (``weight_scales``).

    Args:
        filters: number of output channels.
        kernel_size: side of the square kernel.
        zero_init: start with ``g = 0`` and zero bias so the layer outputs zeros.
        **kwargs: forwarded to ``keras.layers.Layer`` (``name``, ``dtype``).
    """

    def __init__(self, filters: int, *, kernel_size: int = 3, zero_init: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int(filters, name="filters")
        self.kernel_size = check_int(kernel_size, name="kernel_size")
        self.zero_init = bool(zero_init)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        k = self.kernel_size
        self.v = self.add_weight(
            name="v",
            shape=(k, k, in_channels, self.filters),
            initializer=keras.initializers.RandomNormal(stddev=0.05),
        )
        self.g = self.add_weight(
            name="g",
            shape=(self.filters,),
            initializer="zeros" if self.zero_init else "ones",
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def kernel(self):
        """The effective kernel ``g * v / ||v||``."""
        v = ops.convert_to_tensor(self.v)
        norm = ops.sqrt(ops.sum(ops.square(v), axis=(0, 1, 2), keepdims=True) + 1e-12)
        return v * (ops.reshape(ops.convert_to_tensor(self.g), (1, 1, 1, -1)) / norm)

    def call(self, x):
        y = ops.conv(x, ops.cast(self.kernel(), x.dtype), strides=1, padding="same")
        return y + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, zero_init=self.zero_init)
        return config
