"""Per-channel batch moments and their warm-started moving averages.

Shared by the flow's ``BatchNormalization`` bijector and the conditioners'
``ConditionerBatchNorm`` layer, so both keep their statistics by the same rule.
"""

from __future__ import annotations

from keras import ops

from tfp_realnvp.internal.backend import check_state_update


def channel_moments(x):
    """Mean and (biased) variance of ``x`` over every axis but the last."""
    axes = tuple(range(len(x.shape) - 1))
    mean = ops.mean(x, axis=axes)
    return mean, ops.mean(ops.square(x - mean), axis=axes)


def update_moving_moments(*, moving_mean, moving_variance, num_updates, mean, variance, momentum: float, what: str):
    """Moves the averages towards ``(mean, variance)`` once and counts the update.

    After ``k`` updates the decay is ``d_k = min(momentum, k / (k + 1))``:
    ``a <- d_k a + (1 - d_k) s``. The first batch sets the averages, the first
    ``1 / (1 - momentum)`` batches are averaged with equal weights, later ones decay
    by ``momentum``. Gradients do not flow into the averages.

    Args:
        moving_mean: variable ``[C]``.
        moving_variance: variable ``[C]``.
        num_updates: scalar float32 variable ``k``.
        mean: batch mean ``[C]``.
        variance: batch variance ``[C]``.
        momentum: the long-run decay, in ``[0, 1)``.
        what: names the owner in the error raised for a traced update outside a
            stateless scope (JAX).

    Returns:
        ``(old_mean, old_variance, k)``: the averages before this update, and ``k`` in
        their dtype.

    Raises:
        ValueError: on JAX, for a traced update outside a ``keras.StatelessScope``;
            nothing is assigned then.
    """
    # Snapshots of the values before the update: on TensorFlow a variable converted
    # to a tensor is still the variable, and would read the new value after assign.
    old_mean = ops.copy(moving_mean)
    old_var = ops.copy(moving_variance)
    count = ops.copy(num_updates)
    # The decay in the averages' precision (the count is a float32 variable).
    k = ops.cast(count, old_mean.dtype)
    decay = ops.minimum(momentum, k / (k + 1.0))
    new_mean = decay * old_mean + (1.0 - decay) * ops.cast(ops.stop_gradient(mean), old_mean.dtype)
    new_var = decay * old_var + (1.0 - decay) * ops.cast(ops.stop_gradient(variance), old_var.dtype)
    for value in (new_mean, new_var, count + 1.0):
        check_state_update(value, what=what)
    for variable, value in ((moving_mean, new_mean), (moving_variance, new_var), (num_updates, count + 1.0)):
        variable.assign(value)
    return old_mean, old_var, k
