"""Multi-scale factor-out: half the channels leave the flow, the rest go deeper."""

from __future__ import annotations

from keras import ops

from tfp_realnvp.backend import tfb
from tfp_realnvp.bijectors.one_pass import OnePassBijector, transform


class FactorOut(OnePassBijector):
    """Applies ``inner`` to the second half of the channels and passes the first through.

    For an ``[H, W, C]`` event split as ``y = [y_1, y_2]`` along channels
    (``C/2`` each):

    * ``inverse``: ``z = [y_1, inner.inverse(y_2)]``,
      ``log|det dz/dy| = inner.inverse_log_det_jacobian(y_2)``;
    * ``forward``: ``y = [z_1, inner.forward(z_2)]``, with ``inner``'s forward log-det.

    ``y_1`` is the part the paper factors out at this scale: it is already latent, so
    with a standard-normal base over the whole ``[H, W, C]`` tensor it is scored by
    the base density like the rest, and the latent keeps the data's event shape.

    Args:
        inner: the bijector for the remaining half (an ``[H, W, C/2]`` event).
        name: bijector name.
    """

    def __init__(self, inner: tfb.Bijector, *, validate_args: bool = False, name: str = "factor_out"):
        parameters = dict(locals())
        self._inner = inner
        super().__init__(forward_min_event_ndims=3, validate_args=validate_args, parameters=parameters, name=name)

    @property
    def inner(self) -> tfb.Bijector:
        return self._inner

    def _transform(self, x, *, inverse: bool, training: bool = False):
        c = x.shape[-1]
        if c is None or c % 2:
            raise ValueError(f"FactorOut needs an even channel count; received shape {list(x.shape)}.")
        kept, rest = x[..., : c // 2], x[..., c // 2 :]
        out, log_det = transform(self._inner, rest, inverse=inverse, training=training)
        return ops.concatenate([kept, out], axis=-1), log_det
