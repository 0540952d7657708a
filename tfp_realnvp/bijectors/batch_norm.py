"""Batch normalization as an invertible flow step (Real NVP, section 3.7)."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.bijectors.event_shapes import check_built_event
from tfp_realnvp.bijectors.one_pass import OnePassBijector
from tfp_realnvp.bijectors.pull_back import pull_back_step
from tfp_realnvp.internal.arguments import check_number
from tfp_realnvp.internal.backend import eager_scope
from tfp_realnvp.internal.moving_stats import channel_moments, update_moving_moments
from tfp_realnvp.internal.validation import check_event_shape


def check_fraction(value, *, name: str) -> float:
    """``value`` as a float in ``[0, 1)`` (a decay or a mixing weight), else ``ValueError``
    naming the bound it breaks and the value received."""
    check_number(value, name=name, low=0.0, strict=False)
    return check_number(value, name=name, high=1.0)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class FlowBatchNormState(keras.layers.Layer):
    """Per-channel weights of ``BatchNormalization``: ``log_gamma``, ``beta`` (trained),
    ``moving_mean``, ``moving_variance`` and the scalar ``num_updates`` (updated while
    training)."""

    def build(self, input_shape):
        c = (int(input_shape[-1]),)
        self.log_gamma = self.add_weight(name="log_gamma", shape=c, initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=c, initializer="zeros")
        stats = {"trainable": False, "autocast": False, "aggregation": "mean"}
        self.moving_mean = self.add_weight(name="moving_mean", shape=c, initializer="zeros", **stats)
        self.moving_variance = self.add_weight(name="moving_variance", shape=c, initializer="ones", **stats)
        self.num_updates = self.add_weight(name="num_updates", shape=(), initializer="zeros", dtype="float32", **stats)


class BatchNormalization(OnePassBijector):
    """Invertible batch normalization over the channels of ``[..., H, W, C]`` events.

    With per-channel mean ``m`` and variance ``v``:

    * ``inverse`` (data to latent):
      ``z = (y - m) / sqrt(v + eps) * exp(log_gamma) + beta``,
      ``log|det dz/dy| = H W sum_c(log_gamma_c - 0.5 log(v_c + eps))``, returned with
      the batch shape of ``y`` (one value per example, not a broadcast scalar).
    * ``forward`` (latent to data): ``y = (z - beta) exp(-log_gamma) sqrt(v + eps) + m``.

    **Mode.** Every call takes ``training`` (default ``False``). In inference mode, and
    always in ``forward``, ``m, v`` are the moving averages, so the map is a fixed
    bijection with an exact inverse. In training mode ``inverse`` uses the statistics
    of the batch ``(m_B, v_B)`` over every axis but the channels, lets gradients flow
    through them, and updates the moving averages once per call.

    **Moving averages.** After ``k`` updates the ``(k+1)``-th batch moves each average
    ``a`` (mean and variance alike) by

        ``d_k = min(momentum, k / (k + 1))``,  ``a <- d_k a + (1 - d_k) s_B``,

    so the first batch sets the averages (nothing of the initial ``0``/``1`` remains),
    the first ``1 / (1 - momentum)`` batches are averaged with equal weights, and later
    ones decay by ``momentum`` per step (default ``0.9``, the decay 0.1 of the authors'
    code). ``num_updates`` counts ``k``.

    **Re-estimation** (what ``RealNVP.fit`` does at every epoch end and when training
    stops). Running averages mix statistics of weights from several optimizer steps
    ago, ``a = sum_j (1 - d) d^j s(theta_{t-j})``, while inference should use
    ``s(theta_t)``. Re-estimation sets ``k = 0`` and runs ``n`` training batches
    through the flow with the weights held fixed, so by the rule above each average
    becomes the plain mean ``a = (1 / n) sum_i s_{B_i}(theta_t)`` (exact for
    ``n <= 1 / (1 - momentum)``), the statistics of the final weights.

    Measured on the shipped Fashion-MNIST (``benchmarks/batch_norm_modes.py``, JSON and
    plot in ``benchmarks/results/cpu/``; 700 Adam steps, inference-mode test bits/dim
    minus bits/dim with statistics re-estimated from 20 x 256 training images): momentum
    0.99 without warm start +0.23, 0.99 +0.24, 0.95 +0.18, 0.9 +0.12, 0.9 with the lag
    0.5 below +0.07, 0.9 with re-estimation at the epoch end +0.003. Re-estimation is
    the only candidate within 0.02, so ``fit`` does it by default
    (``RealNVP(refresh_batches=8)``).

    **Devices.** Under ``keras.distribution.DataParallel`` (JAX) the batch moments are
    reductions over the global batch, across every device and process of the job, so
    ``N`` devices compute what one device computes on the same global batch. Under
    TensorFlow's ``MirroredStrategy`` each replica normalises with the moments of its
    own share of the batch, and the moving averages are the mean over replicas.

    **Lag** (the paper's appendix E, "a running average over recent minibatches"):
    with ``lag > 0`` training normalises with
    ``m = (1 - l_k) m_B + l_k stopgrad(a_m)``,
    ``v = (1 - l_k) v_B + l_k stopgrad(a_v)``, ``l_k = min(lag, k / (k + 1))``, where
    ``a`` are the averages before this batch; training then sees statistics closer to
    those used at inference.

    Args:
        event_shape: ``[H, W, C]`` to build the weights now; ``None`` builds on first use.
        momentum: decay of the moving averages, in ``[0, 1)``.
        epsilon: variance floor, ``> 0``.
        lag: weight of the moving averages in the training statistics, in ``[0, 1)``.
        dtype: Keras dtype policy of the weights layer.
        validate_args: passed to ``tfb.Bijector``.
        name: bijector name.
    """

    def __init__(
        self,
        *,
        event_shape=None,
        momentum: float = 0.9,
        epsilon: float = 1e-4,
        lag: float = 0.0,
        dtype=None,
        validate_args: bool = False,
        name: str = "batch_normalization",
    ):
        parameters = dict(locals())
        self._momentum = check_fraction(momentum, name="momentum")
        self._epsilon = check_number(epsilon, name="epsilon", low=0.0)
        self._lag = check_fraction(lag, name="lag")
        self._layer_dtype = dtype
        self._state = None
        self._event_shape = None
        super().__init__(forward_min_event_ndims=3, validate_args=validate_args, parameters=parameters, name=name)
        if event_shape is not None:
            self.build(event_shape)

    def build(self, event_shape) -> None:
        """Creates the weights for an ``[H, W, C]`` event.

        Raises:
            ValueError: naming the shape, for a rank below 3 or another event shape
                than the one the weights were built for.
        """
        event = check_event_shape(event_shape, name=f"{self.name} event")
        self._validate_event_shape(event, inverse=False)
        if self._event_shape is not None:
            return
        with eager_scope():
            self._state = FlowBatchNormState(dtype=self._layer_dtype, name=f"{self.name}_state")
            self._state.build((None,) + event)
        self._event_shape = event
        self._track_variables(self._state.weights)

    def _validate_event_shape(self, event, *, inverse: bool) -> None:
        check_built_event(event, self._event_shape, name=self.name)

    def _has_moving_statistics(self) -> bool:
        return True

    @property
    def momentum(self) -> float:
        return self._momentum

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @property
    def lag(self) -> float:
        return self._lag

    @property
    def event_shape(self) -> tuple[int, int, int] | None:
        return self._event_shape

    @property
    def state(self) -> FlowBatchNormState | None:
        return self._state

    @property
    def layers(self) -> list:
        return [self._state] if self._state is not None else []

    def _training_statistics(self, y):
        """Batch (or lagged) statistics of ``y``; updates the moving averages once."""
        st = self._state
        mean, var = channel_moments(y)
        old_mean, old_var, k = update_moving_moments(
            moving_mean=st.moving_mean,
            moving_variance=st.moving_variance,
            num_updates=st.num_updates,
            mean=mean,
            variance=var,
            momentum=self._momentum,
            what=f"{self.name} batch-norm moving averages",
        )
        if self._lag > 0.0:
            lag = ops.cast(ops.minimum(self._lag, k / (k + 1.0)), y.dtype)
            mean = (1.0 - lag) * mean + lag * ops.cast(old_mean, y.dtype)
            var = (1.0 - lag) * var + lag * ops.cast(old_var, y.dtype)
        return mean, var

    def _statistics(self, x, *, inverse: bool, training: bool):
        """The ``(mean, variance)`` that normalise ``x``: the batch's in training mode."""
        if inverse and training:
            return self._training_statistics(x)
        return ops.cast(self._state.moving_mean, x.dtype), ops.cast(self._state.moving_variance, x.dtype)

    def _apply(self, x, mean, var, *, inverse: bool):
        """The transformation with given statistics: ``(value, log_det)``."""
        dtype = x.dtype
        log_gamma = ops.cast(self._state.log_gamma, dtype)
        beta = ops.cast(self._state.beta, dtype)
        log_scale = log_gamma - 0.5 * ops.log(var + self._epsilon)
        h, w, _ = self._event_shape
        per_example = ops.sum(log_scale) * float(h * w)
        ldj = ops.zeros(ops.shape(x)[:-3], dtype=dtype) + per_example
        if inverse:
            return (x - mean) * ops.exp(log_scale) + beta, ldj
        return (x - beta) * ops.exp(-log_scale) + mean, -ldj

    def _transform(self, x, *, inverse: bool, training: bool = False):
        self.build(x.shape[-3:])
        mean, var = self._statistics(x, inverse=inverse, training=training)
        return self._apply(x, mean, var, inverse=inverse)

    def _transform_recorded(self, x, *, inverse: bool, training: bool = False):
        """Also keeps the statistics the pass normalised with: the inverse needs them."""
        self.build(x.shape[-3:])
        mean, var = self._statistics(x, inverse=inverse, training=training)
        y, log_det = self._apply(x, mean, var, inverse=inverse)
        return y, log_det, (mean, var)

    def _reverse(self, y, g_y, g_log_det, record, *, inverse: bool, training: bool, grads: dict):
        """Rebuilds ``x`` with the recorded statistics, then pulls back through the pass at
        ``x`` (in training mode that pass recomputes the batch statistics, so the
        cotangent includes their dependence on ``x``)."""
        mean, var = record
        x, _ = self._apply(y, mean, var, inverse=not inverse)
        g_x = pull_back_step(
            self, lambda x: self._transform(x, inverse=inverse, training=training), x, (g_y, g_log_det), grads=grads
        )
        return x, g_x
