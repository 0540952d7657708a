"""A class-conditional Gaussian base for conditional flows (Glow's learned prior)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.backend import tfd
from tfp_realnvp.internal.validation import check_event_shape


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ConditionalNormal(keras.layers.Layer):
    """Base density ``p(z | c) = N(z; mu(c), diag(sigma(c)^2))`` over an ``[H, W, C]`` latent.

    ``mu(c) = c M`` and ``log sigma(c) = c S`` for a context ``c`` in ``R^K`` and learned
    tables ``M, S`` of shape ``[K, H, W, C]``: for a one-hot label ``c = onehot(y)`` these
    are a learned mean and log-scale per class (the class-conditional prior of Glow,
    Kingma & Dhariwal 2018). Both tables start at zero, so the base starts as the
    standard normal.

    ``distribution(c)`` returns a TFP distribution with batch shape ``c.shape[:-1]`` and
    event shape ``[H, W, C]`` (``tfd.Independent`` over a ``tfd.Normal``), to use as the
    base of a ``tfd.TransformedDistribution`` through a conditional flow::

        base = ConditionalNormal(num_classes=10, event_shape=(28, 28, 1))
        dist = tfd.TransformedDistribution(base.distribution(c), flow)
        dist.log_prob(x, bijector_kwargs={"conditional_input": c})      # x: [N, 28, 28, 1]
        dist.sample(seed=s, bijector_kwargs={"conditional_input": c})   # one image per row of c

    ``dist.sample(n, ...)`` draws ``[n, N, H, W, C]``: ``n`` images for each row of ``c``
    (the context broadcasts over the sample dimension in the flow). The tables are Keras
    weights of this layer (``trainable_weights``); on TensorFlow a ``tf.train.Checkpoint``
    holding the layer saves them. A distribution made by ``distribution(c)`` holds tensors
    computed from them, so train ``flow.trainable_variables + base.trainable_weights``.

    Args:
        num_classes: ``K``, the size of the context (the number of classes for one-hot
            labels), >= 1.
        event_shape: ``[H, W, C]`` of the latent.
        **kwargs: forwarded to ``keras.layers.Layer`` (``dtype``, ``name``).
    """

    def __init__(self, num_classes: int, event_shape: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_int(num_classes, name="num_classes")
        self.event_shape = check_event_shape(event_shape, name="event_shape")
        shape = (self.num_classes, *self.event_shape)
        self.loc_table = self.add_weight(name="loc", shape=shape, initializer="zeros")
        self.log_scale_table = self.add_weight(name="log_scale", shape=shape, initializer="zeros")
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def _context(self, conditional_input):
        context = ops.convert_to_tensor(conditional_input)
        if len(context.shape) < 1 or context.shape[-1] != self.num_classes:
            raise ValueError(
                f"{self.name} needs a context of shape [..., {self.num_classes}]; received shape {list(context.shape)}."
            )
        if "float" not in keras.backend.standardize_dtype(context.dtype):
            raise ValueError(f"{self.name} takes a float context (one-hot labels); received dtype {context.dtype}.")
        return ops.cast(context, self.variable_dtype)

    def loc_and_scale(self, conditional_input):
        """``(mu(c), sigma(c))``, each ``c.shape[:-1] + [H, W, C]``."""
        context = self._context(conditional_input)
        loc = ops.tensordot(context, ops.convert_to_tensor(self.loc_table), axes=1)
        log_scale = ops.tensordot(context, ops.convert_to_tensor(self.log_scale_table), axes=1)
        return loc, ops.exp(log_scale)

    def distribution(self, conditional_input):
        """``p(z | c)`` as a TFP distribution: batch shape ``c.shape[:-1]``, event ``[H, W, C]``."""
        loc, scale = self.loc_and_scale(conditional_input)
        return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=3)

    def call(self, conditional_input):
        """The mean ``mu(c)`` (so the layer is a Keras layer with an output)."""
        return self.loc_and_scale(conditional_input)[0]

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, event_shape=list(self.event_shape))
        return config
