"""ResNet conditioner that maps the fixed half of a coupling to raw scale and shift."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.networks.weight_norm import WeightNormConv2D


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ResNetConditioner(keras.layers.Layer):
    """Weight-normalized ResNet: ``[N, H, W, C_in] -> [N, H, W, 2 * out_channels]``.

    ``h = conv_in(x)``; ``num_blocks`` times ``h = h + conv(relu(conv(relu(h))))``;
    ``out = conv_out(relu(h))``. Every convolution is 3x3 and weight-normalized; the
    output convolution starts at zero so the coupling that owns this network starts
    as the identity. The first ``out_channels`` outputs are the raw log-scale, the
    rest the shift.

    Args:
        out_channels: channels that the coupling transforms.
        num_filters: width of the hidden layers.
        num_blocks: number of residual blocks.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, out_channels: int, *, num_filters: int = 64, num_blocks: int = 8, **kwargs):
        super().__init__(**kwargs)
        for key, value, low in (("out_channels", out_channels, 1), ("num_filters", num_filters, 1), ("num_blocks", num_blocks, 0)):
            if int(value) != value or int(value) < low:
                raise ValueError(f"{key} must be an integer >= {low}; received {value!r}.")
        self.out_channels = int(out_channels)
        self.num_filters = int(num_filters)
        self.num_blocks = int(num_blocks)
        layer_kw = {"dtype": self.dtype_policy}
        self.conv_in = WeightNormConv2D(self.num_filters, name="conv_in", **layer_kw)
        self.block_conv1 = [
            WeightNormConv2D(self.num_filters, name=f"block{i}_conv1", **layer_kw) for i in range(self.num_blocks)
        ]
        self.block_conv2 = [
            WeightNormConv2D(self.num_filters, name=f"block{i}_conv2", **layer_kw) for i in range(self.num_blocks)
        ]
        self.conv_out = WeightNormConv2D(2 * self.out_channels, zero_init=True, name="conv_out", **layer_kw)

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv_in.build(shape)
        hidden = shape[:-1] + (self.num_filters,)
        for conv1, conv2 in zip(self.block_conv1, self.block_conv2):
            conv1.build(hidden)
            conv2.build(hidden)
        self.conv_out.build(hidden)

    def call(self, x):
        h = self.conv_in(x)
        for conv1, conv2 in zip(self.block_conv1, self.block_conv2):
            h = h + conv2(ops.relu(conv1(ops.relu(h))))
        return self.conv_out(ops.relu(h))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2 * self.out_channels,)

    def weight_scales(self) -> list:
        """The weight-norm scales ``g`` of every convolution (for L2 regularisation)."""
        convs = [self.conv_in, self.conv_out, *self.block_conv1, *self.block_conv2]
        return [c.g for c in convs]

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels, num_filters=self.num_filters, num_blocks=self.num_blocks)
        return config
