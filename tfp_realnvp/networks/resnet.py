"""ResNet conditioner that maps the fixed half of a coupling to raw scale and shift."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.networks.batch_norm import ConditionerBatchNorm, check_momentum
from tfp_realnvp.networks.weight_norm import WeightNormConv2D


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ResNetConditioner(keras.layers.Layer):
    """Weight-normalized ResNet: ``[N, H, W, C_in] -> [N, H, W, 2 * out_channels]``.

    ``h = bn(conv_in(x))``; ``num_blocks`` times
    ``h = h + bn(conv2(relu(bn(conv1(relu(h))))))``; ``out = conv_out(relu(h))``.
    Every convolution is 3x3 and weight-normalized; ``bn`` is a
    ``ConditionerBatchNorm`` when ``batch_norm=True`` (the paper puts batch and weight
    normalization in ``s`` and ``t``) and the identity otherwise. The output
    convolution starts at zero so the coupling that owns this network starts as the
    identity. The first ``out_channels`` outputs are the raw log-scale, the rest the
    shift.

    Sub-layers are attributes (``conv_in``, ``block{i}_conv1``, ...), not list items,
    so that TensorFlow checkpoints find every one of them.

    Args:
        out_channels: channels that the coupling transforms.
        num_filters: width of the hidden layers.
        num_blocks: number of residual blocks.
        batch_norm: batch normalization after every hidden convolution.
        batch_norm_momentum: decay of its moving averages.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(
        self,
        out_channels: int,
        *,
        num_filters: int = 64,
        num_blocks: int = 8,
        batch_norm: bool = False,
        batch_norm_momentum: float = 0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.out_channels = check_int(out_channels, name="out_channels")
        self.num_filters = check_int(num_filters, name="num_filters")
        self.num_blocks = check_int(num_blocks, name="num_blocks", low=0)
        self.batch_norm = bool(batch_norm)
        self.batch_norm_momentum = check_momentum(batch_norm_momentum, name="batch_norm_momentum")
        layer_kw = {"dtype": self.dtype_policy}
        self.conv_in = WeightNormConv2D(self.num_filters, name="conv_in", **layer_kw)
        for i in range(self.num_blocks):
            setattr(self, f"block{i}_conv1", WeightNormConv2D(self.num_filters, name=f"block{i}_conv1", **layer_kw))
            setattr(self, f"block{i}_conv2", WeightNormConv2D(self.num_filters, name=f"block{i}_conv2", **layer_kw))
        self.conv_out = WeightNormConv2D(2 * self.out_channels, zero_init=True, name="conv_out", **layer_kw)
        if self.batch_norm:
            for name in self._norm_names():
                setattr(self, name, ConditionerBatchNorm(momentum=self.batch_norm_momentum, name=name, **layer_kw))

    def _norm_names(self) -> list[str]:
        return ["norm_in"] + [f"block{i}_norm{j}" for i in range(self.num_blocks) for j in (1, 2)]

    def _norm(self, name: str):
        return getattr(self, name) if self.batch_norm else None

    @property
    def block_conv1(self) -> list:
        """The first convolution of every residual block."""
        return [getattr(self, f"block{i}_conv1") for i in range(self.num_blocks)]

    @property
    def block_conv2(self) -> list:
        """The second convolution of every residual block."""
        return [getattr(self, f"block{i}_conv2") for i in range(self.num_blocks)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv_in.build(shape)
        hidden = shape[:-1] + (self.num_filters,)
        for conv1, conv2 in zip(self.block_conv1, self.block_conv2):
            conv1.build(hidden)
            conv2.build(hidden)
        self.conv_out.build(hidden)
        if self.batch_norm:
            for name in self._norm_names():
                getattr(self, name).build(hidden)

    @staticmethod
    def _apply_norm(norm, h, training):
        return h if norm is None else norm(h, training=training)

    def call(self, x, training=False):
        h = self._apply_norm(self._norm("norm_in"), self.conv_in(x), training)
        for i, (conv1, conv2) in enumerate(zip(self.block_conv1, self.block_conv2)):
            r = self._apply_norm(self._norm(f"block{i}_norm1"), conv1(ops.relu(h)), training)
            r = self._apply_norm(self._norm(f"block{i}_norm2"), conv2(ops.relu(r)), training)
            h = h + r
        return self.conv_out(ops.relu(h))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2 * self.out_channels,)

    def weight_scales(self) -> list:
        """The weight-norm scales ``g`` of every convolution (for L2 regularisation)."""
        convs = [self.conv_in, self.conv_out, *self.block_conv1, *self.block_conv2]
        return [c.g for c in convs]

    def get_config(self):
        config = super().get_config()
        config.update(
            out_channels=self.out_channels,
            num_filters=self.num_filters,
            num_blocks=self.num_blocks,
            batch_norm=self.batch_norm,
            batch_norm_momentum=self.batch_norm_momentum,
        )
        return config
