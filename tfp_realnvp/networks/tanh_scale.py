"""Bounded log-scale ``s = scale * tanh(raw)`` with a learnable per-channel ``scale``."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class TanhScale(keras.layers.Layer):
    """``s = scale * tanh(raw)``, one learnable ``scale`` per channel (initialised to 1).

    ``tanh`` bounds each log-scale to ``(-|scale|, |scale|)``, which keeps early training
    stable; the learnable ``scale`` lets a channel use a wider range once it needs it.
    """

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(int(input_shape[-1]),), initializer="ones")

    def call(self, raw):
        return ops.cast(self.scale, raw.dtype) * ops.tanh(raw)
