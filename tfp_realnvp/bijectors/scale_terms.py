"""The data-to-latent pass of a ``MultiScaleFlow`` with its log-det split by scale.

``log p(x)`` of a multi-scale flow is a sum of terms that belong to its scales: the
logit step's log-det, and per scale ``l`` the log-dets of that scale's own steps (its
couplings and batch-norm steps, not those of the deeper scales it passes half its
channels to) plus the base log-density of the latents it factors out (the last
scale: of all its output). ``scale_terms`` runs the same steps as the flow's
``inverse`` and returns these pieces, so that

``log p(x) = preprocess_log_det + sum_l (log_det[l] + sum over latents z_i of scale l of log p_base(z_i))``.
"""

from __future__ import annotations

from typing import NamedTuple

from keras import ops

from tfp_realnvp.bijectors.factor_out import FactorOut
from tfp_realnvp.bijectors.one_pass import apply_leaf
from tfp_realnvp.bijectors.preprocess import LogitPreprocess
from tfp_realnvp.bijectors.squeeze import Squeeze
from tfp_realnvp.bijectors.walk import leaves


class ScaleTerms(NamedTuple):
    """The data-to-latent pass of a multi-scale flow, split by scale.

    Attributes:
        latent: ``z = f(x)``, ``[N, H, W, C]``: the flow's ``inverse``.
        scale_index: float32 ``[H, W, C]``: the scale ``l`` whose factor-out (or, for
            the last scale, whose output) each latent position is.
        preprocess_log_det: ``[N]``, the logit step's ``log|det|`` (zeros without one).
        log_dets: one ``[N]`` tensor per scale, the ``log|det|`` of the scale's own steps.
    """

    latent: object
    scale_index: object
    preprocess_log_det: object
    log_dets: list


def scale_terms(flow, x, *, training: bool = False, conditional_input=None) -> ScaleTerms:
    """Runs ``flow``'s data-to-latent pass on pixels ``x`` and splits its log-det by scale.

    The steps are those of ``flow.inverse`` (same order, same batch-norm mode, same
    context), so ``latent`` equals ``flow.inverse(x)`` and
    ``preprocess_log_det + sum(log_dets)`` equals ``flow.inverse_log_det_jacobian(x)``.

    Args:
        flow: a built ``MultiScaleFlow``.
        x: continuous pixels ``[N, H, W, C]``.
        training: the batch-norm mode.
        conditional_input: the context of a conditional flow, else ``None``.

    Returns:
        A ``ScaleTerms``.
    """
    flow.build(x.shape[-3:])
    log_dets: list = []
    zeros = ops.zeros_like(x[:, 0, 0, 0])
    index = ops.zeros_like(x[0])
    preprocess = zeros
    for leaf in leaves(flow.chain, inverse=True):
        if isinstance(leaf.bijector, LogitPreprocess):
            x, log_det = apply_leaf(leaf, x, training=training, conditional_input=conditional_input)
            preprocess = preprocess + log_det
        else:
            x, index = _scale_step(leaf, x, index, 0, log_dets, training=training, conditional_input=conditional_input)
    return ScaleTerms(x, index, preprocess, [zeros + d for d in log_dets])


def _scale_step(leaf, x, index, scale: int, log_dets: list, *, training: bool, conditional_input):
    """Applies one step of scale ``scale``; a ``FactorOut`` recurses into the next scale."""
    while len(log_dets) <= scale:
        log_dets.append(0.0)
    step = leaf.bijector
    if isinstance(step, FactorOut):
        half = x.shape[-1] // 2
        rest, rest_index = x[..., half:], ops.zeros_like(index[..., half:]) + float(scale + 1)
        for inner in leaves(step.inner, inverse=leaf.inverse):
            rest, rest_index = _scale_step(
                inner, rest, rest_index, scale + 1, log_dets, training=training, conditional_input=conditional_input
            )
        kept_index = ops.zeros_like(index[..., :half]) + float(scale)
        return (
            ops.concatenate([x[..., :half], rest], axis=-1),
            ops.concatenate([kept_index, rest_index], axis=-1),
        )
    x, log_det = apply_leaf(leaf, x, training=training, conditional_input=conditional_input)
    if isinstance(step, Squeeze):  # a permutation: the positions' scales move with the values
        index = apply_leaf(leaf, index[None], training=training)[0][0]
    else:
        log_dets[scale] = log_dets[scale] + log_det
    return x, index
