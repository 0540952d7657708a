"""Training modes that recompute activations in the backward pass instead of storing them.

``MultiScaleFlow(recompute=...)`` and ``RealNVP(recompute=...)`` take one of:

* ``"none"``: autodiff keeps every activation of the training step.
* ``"conditioner"`` (level 1): each coupling's conditioner network runs under
  ``keras.remat`` (``jax.checkpoint`` / ``tf.recompute_grad``): only its input is kept,
  and its hidden activations are computed again when its gradient is needed.
* ``"invertible"`` (level 2): the data-to-latent pass keeps only its output ``z``
  (and the per-channel statistics of the flow's batch-norm steps). The backward pass
  walks the steps from the last to the first and rebuilds each step's input from its
  output with the step's inverse (``x_b = (z_b - t(z_a)) exp(-s(z_a))`` for a
  coupling, whose fixed half ``z_a = x_a`` is unchanged), then pulls the cotangents
  back through that step alone (``bijectors.reversible``). Nothing between steps is
  stored, so activation memory no longer grows with the depth of the flow.

Both levels compute the same gradients as ``"none"`` (to rounding: level 2 rebuilds
inputs, so in float32 its gradients differ from the stored ones by the inverse's
rounding error) and update every batch-norm moving average exactly once per step.
They apply to training-mode calls (``training=True``); inference-mode calls are the
same in every mode.
"""

from __future__ import annotations

import keras

from tfp_realnvp.backend import check_state_update
from tfp_realnvp.gradients import read_values

#: The accepted values of ``recompute``, from least to most recomputation.
RECOMPUTE_MODES = ("none", "conditioner", "invertible")


def check_recompute(recompute) -> str:
    """``recompute`` if it is one of ``RECOMPUTE_MODES``, else ``ValueError`` naming it."""
    if not isinstance(recompute, str) or recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute must be one of {list(RECOMPUTE_MODES)}; received {recompute!r}.")
    return recompute


def assign_updates(variables, old_values, new_values, *, what: str) -> None:
    """Writes each new value that differs from its old one (batch-norm state after a step)."""
    for variable, old, new in zip(variables, old_values, new_values):
        if new is old:
            continue
        check_state_update(new, what=what)
        variable.assign(new)


def rematerialized_call(layer: keras.layers.Layer, x, *, training: bool):
    """``layer(x, training=training)`` whose hidden activations are recomputed for the gradient.

    The layer runs as a pure function of its weights (``Layer.stateless_call``) under
    ``keras.remat``; the batch-norm statistics it updates in training mode come back
    as values and are written once here, so recomputation never updates them again.
    """
    trainable, state = layer.trainable_variables, layer.non_trainable_variables
    params, state_values = read_values(trainable), read_values(state)
    num_params = len(params)

    def pure(*flat):
        out, new_state = layer.stateless_call(list(flat[:num_params]), list(flat[num_params:-1]), flat[-1], training=training)
        return (out, *new_state)

    out, *new_state = keras.remat(pure)(*params, *state_values, x)
    if training:
        assign_updates(state, state_values, new_state, what=f"{layer.name} moving averages")
    return out
