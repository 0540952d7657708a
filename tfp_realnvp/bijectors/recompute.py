"""Training modes that recompute activations in the backward pass instead of storing them.

``MultiScaleFlow(recompute=...)`` and ``RealNVP(recompute=...)`` take one of:

* ``"none"``: autodiff keeps every activation of the training step.
* ``"conditioner"`` (level 1): each coupling's conditioner network keeps only its
  input; its hidden activations are computed again when its gradient is needed
  (``rematerialized_call``: a hand-written backward pass whose recomputation depends
  on the incoming cotangent, ``gradients.after``; with ``keras.remat``, i.e.
  ``jax.checkpoint``, XLA's CPU compiler merges the recomputation back into the
  forward pass and the compiled step needs as much memory as without it).
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
from keras import ops

from tfp_realnvp.internal.backend import check_state_update
from tfp_realnvp.internal.gradients import after, custom_vjp, read_values, vjp

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

    The layer runs as a pure function of its weights (``Layer.stateless_call``); only
    its input and weights are kept, and the backward pass runs it again, after its
    output's cotangent exists (``gradients.after``), to pull the cotangent back. The
    batch-norm statistics it updates in training mode come back as values and are
    written once here, so the recomputation never updates them again.
    """
    trainable, state = layer.trainable_variables, layer.non_trainable_variables
    params, state_values = read_values(trainable), read_values(state)

    def fwd(x, params, state_values):
        out, new_state = layer.stateless_call(params, state_values, x, training=training)
        return (out, new_state), (x, params, state_values)

    def bwd(residuals, cotangents):
        x, params, state_values = residuals
        g_out, _ = cotangents
        (x,) = after((x,), g_out)

        def pure(x, params):
            return layer.stateless_call(params, state_values, x, training=training)[0]

        _, pull = vjp(pure, x, params)
        g_x, g_params = pull(g_out)
        return g_x, list(g_params), [ops.zeros_like(s) for s in state_values]

    out, new_state = custom_vjp(fwd, bwd)(x, params, state_values)
    if training:
        assign_updates(state, state_values, new_state, what=f"{layer.name} moving averages")
    return out
