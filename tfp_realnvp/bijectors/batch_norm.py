"""Batch normalization as an invertible flow step (Real NVP, section 3.7)."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.bijectors.one_pass import OnePassBijector
from tfp_realnvp.validation import check_event_shape


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class FlowBatchNormState(keras.layers.Layer):
    """Per-channel weights of ``BatchNormalization``: ``log_gamma``, ``beta`` (trained)
    and ``moving_mean``, ``moving_variance`` (updated while training)."""

    def build(self, input_shape):
        c = (int(input_shape[-1]),)
        self.log_gamma = self.add_weight(name="log_gamma", shape=c, initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=c, initializer="zeros")
        stats = {"trainable": False, "autocast": False, "aggregation": "mean"}
        self.moving_mean = self.add_weight(name="moving_mean", shape=c, initializer="zeros", **stats)
        self.moving_variance = self.add_weight(name="moving_variance", shape=c, initializer="ones", **stats)


class BatchNormalization(OnePassBijector):
    """Invertible batch normalization over the channels of ``[..., H, W, C]`` events.

    With per-channel mean ``m`` and variance ``v``:

    * ``inverse`` (data to latent):
      ``z = (y - m) / sqrt(v + eps) * exp(log_gamma) + beta``,
      ``log|det dz/dy| = H W sum_c(log_gamma_c - 0.5 log(v_c + eps))``, returned with
      the batch shape of ``y`` (one value per example, not a broadcast scalar).
    * ``forward`` (latent to data): ``y = (z - beta) exp(-log_gamma) sqrt(v + eps) + m``.

    In training mode (``training = True``, set by ``MultiScaleFlow.training_mode`` or
    the Keras ``training`` flag) ``inverse`` uses the statistics of the batch,
    over every axis but the channels, lets gradients flow through them, and moves
    ``moving_mean``/``moving_variance`` towards them by ``1 - momentum``. Otherwise,
    and always in ``forward``, the moving averages are used, so the map is a fixed
    bijection with an exact inverse.

    Args:
        event_shape: ``[H, W, C]`` to build the weights now; ``None`` builds on first use.
        momentum: decay of the moving averages, in ``[0, 1)``.
        epsilon: variance floor, ``> 0``.
        dtype: Keras dtype policy of the weights layer.
        name: bijector name.
    """

    def __init__(self, *, event_shape=None, momentum: float = 0.99, epsilon: float = 1e-4, dtype=None, validate_args: bool = False, name: str = "batch_normalization"):
        parameters = dict(locals())
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must lie in [0, 1); received {momentum!r}.")
        if not float(epsilon) > 0.0:
            raise ValueError(f"epsilon must be positive; received {epsilon!r}.")
        self._momentum = float(momentum)
        self._epsilon = float(epsilon)
        self._layer_dtype = dtype
        self._state = None
        self._event_shape = None
        self.training = False
        super().__init__(forward_min_event_ndims=3, validate_args=validate_args, parameters=parameters, name=name)
        if event_shape is not None:
            self.build(event_shape)

    def build(self, event_shape) -> None:
        event = check_event_shape(event_shape, name=f"{self.name} event")
        if self._event_shape is not None:
            if event != self._event_shape:
                raise ValueError(
                    f"{self.name} was built for event shape {list(self._event_shape)}; "
                    f"received event shape {list(event)}."
                )
            return
        self._state = FlowBatchNormState(dtype=self._layer_dtype, name=f"{self.name}_state")
        self._state.build((None,) + event)
        self._event_shape = event

    @property
    def state(self) -> FlowBatchNormState | None:
        return self._state

    @property
    def layers(self) -> list:
        return [self._state] if self._state is not None else []

    @property
    def variables(self):
        return list(self._state.weights) if self._state is not None else []

    @property
    def trainable_variables(self):
        return list(self._state.trainable_weights) if self._state is not None else []

    def _statistics(self, y, *, update: bool):
        dtype = y.dtype
        if update:
            axes = tuple(range(len(y.shape) - 1))
            mean = ops.mean(y, axis=axes)
            var = ops.mean(ops.square(y - mean), axis=axes)
            st, m = self._state, self._momentum
            st.moving_mean.assign(m * st.moving_mean + (1.0 - m) * ops.cast(ops.stop_gradient(mean), st.moving_mean.dtype))
            st.moving_variance.assign(m * st.moving_variance + (1.0 - m) * ops.cast(ops.stop_gradient(var), st.moving_variance.dtype))
            return mean, var
        return ops.cast(self._state.moving_mean, dtype), ops.cast(self._state.moving_variance, dtype)

    def _transform(self, x, *, inverse: bool):
        self.build(x.shape[-3:])
        dtype = x.dtype
        mean, var = self._statistics(x, update=inverse and self.training)
        log_gamma = ops.cast(self._state.log_gamma, dtype)
        beta = ops.cast(self._state.beta, dtype)
        log_scale = log_gamma - 0.5 * ops.log(var + self._epsilon)
        h, w, _ = self._event_shape
        per_example = ops.sum(log_scale) * float(h * w)
        ldj = ops.zeros(ops.shape(x)[:-3], dtype=dtype) + per_example
        if inverse:
            return (x - mean) * ops.exp(log_scale) + beta, ldj
        return (x - beta) * ops.exp(-log_scale) + mean, -ldj
