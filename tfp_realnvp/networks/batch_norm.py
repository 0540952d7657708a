"""Batch normalization for the hidden layers of the conditioner networks."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.internal.arguments import check_number
from tfp_realnvp.internal.moving_stats import channel_moments, update_moving_moments


def check_momentum(value, *, name: str = "momentum") -> float:
    """``value`` as a float decay of moving averages, in ``[0, 1)``.

    Raises:
        ValueError: naming ``name`` and the value received.
    """
    check_number(value, name=name, low=0.0, strict=False)
    return check_number(value, name=name, high=1.0)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ConditionerBatchNorm(keras.layers.Layer):
    """Per-channel batch normalization, ``y = gamma (x - m) / sqrt(v + eps) + beta``.

    In training mode ``(m, v)`` are the batch's moments over every axis but the
    channels, and the moving averages are updated once per call by the same
    warm-started rule as the flow's ``BatchNormalization`` (``moving_stats``):
    after ``k`` updates the decay is ``min(momentum, k / (k + 1))``. Otherwise the
    moving averages are used. Unlike the flow's batch norm this layer is not a
    bijection and adds nothing to the log-det: it only conditions ``s`` and ``t``.

    Args:
        momentum: long-run decay of the moving averages, in ``[0, 1)``.
        epsilon: variance floor, ``> 0``.
        **kwargs: forwarded to ``keras.layers.Layer``.
    """

    def __init__(self, *, momentum: float = 0.9, epsilon: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.momentum = check_momentum(momentum)
        self.epsilon = check_number(epsilon, name="epsilon", low=0.0)

    def build(self, input_shape):
        c = (int(input_shape[-1]),)
        self.gamma = self.add_weight(name="gamma", shape=c, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=c, initializer="zeros")
        stats = {"trainable": False, "autocast": False, "aggregation": "mean"}
        self.moving_mean = self.add_weight(name="moving_mean", shape=c, initializer="zeros", **stats)
        self.moving_variance = self.add_weight(name="moving_variance", shape=c, initializer="ones", **stats)
        self.num_updates = self.add_weight(name="num_updates", shape=(), initializer="zeros", dtype="float32", **stats)

    def call(self, x, training=False):
        if training:
            # Moments in float32 at least, whatever the compute dtype.
            stats_dtype = "float64" if x.dtype == "float64" else "float32"
            mean, var = channel_moments(ops.cast(x, stats_dtype))
            update_moving_moments(
                moving_mean=self.moving_mean,
                moving_variance=self.moving_variance,
                num_updates=self.num_updates,
                mean=mean,
                variance=var,
                momentum=self.momentum,
                what=f"{self.name} moving averages",
            )
        else:
            mean, var = self.moving_mean, self.moving_variance
        stats_dtype = "float64" if x.dtype == "float64" else "float32"
        scale = ops.cast(self.gamma, stats_dtype) * ops.rsqrt(ops.cast(var, stats_dtype) + self.epsilon)
        shift = ops.cast(self.beta, scale.dtype) - ops.cast(mean, scale.dtype) * scale
        return x * ops.cast(scale, x.dtype) + ops.cast(shift, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, epsilon=self.epsilon)
        return config
