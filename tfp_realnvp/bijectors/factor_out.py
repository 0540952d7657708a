"""Multi-scale factor-out: half the channels leave the flow, the rest go deeper."""

from __future__ import annotations

from keras import ops

from tfp_realnvp.bijectors.event_shapes import format_event
from tfp_realnvp.bijectors.one_pass import OnePassBijector, check_nested_event_shape, one_pass_steps, transform
from tfp_realnvp.bijectors.reversible import record_transform, reverse_transform
from tfp_realnvp.internal.backend import tfb


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

    ``inner`` must keep the event shape of its ``[H, W, C/2]`` input. The event-shape
    methods reject an odd ``C`` and every shape whose half ``inner`` rejects.

    Args:
        inner: the bijector for the remaining half (an ``[H, W, C/2]`` event).
        validate_args: passed to ``tfb.Bijector``.
        name: bijector name.
    """

    def __init__(self, inner: tfb.Bijector, *, validate_args: bool = False, name: str = "factor_out"):
        parameters = dict(locals())
        self._inner = inner
        super().__init__(forward_min_event_ndims=3, validate_args=validate_args, parameters=parameters, name=name)

    @property
    def inner(self) -> tfb.Bijector:
        return self._inner

    def _one_pass_parts(self):
        return one_pass_steps(self._inner)

    def _validate_event_shape(self, event, *, inverse: bool) -> None:
        h, w, c = event
        if c is not None and c % 2:
            raise ValueError(f"FactorOut needs an even channel count; received event shape {format_event(event)}.")
        half = (h, w, None if c is None else c // 2)
        try:
            out = check_nested_event_shape(self._inner, half, inverse=inverse)
        except ValueError as error:
            raise ValueError(
                f"{self.name} passes the last {format_event(half)} of event shape {format_event(event)} "
                f"to its inner bijector, which rejects it: {error}"
            ) from error
        if any(a is not None and b is not None and a != b for a, b in zip(out, half)):
            raise ValueError(
                f"{self.name} needs an inner bijector that keeps the event shape; for event shape "
                f"{format_event(event)} it maps {format_event(half)} to {format_event(out)}."
            )

    @property
    def conditional(self) -> bool:
        """Whether a step of ``inner`` is conditional (then ``conditional_input`` is passed on)."""
        return any(part.conditional for part in one_pass_steps(self._inner))

    def _transform(self, x, *, inverse: bool, training: bool = False, conditional_input=None):
        c = x.shape[-1]
        if c is None:
            raise ValueError(f"FactorOut needs a known channel count; received shape {list(x.shape)}.")
        kept, rest = x[..., : c // 2], x[..., c // 2 :]
        out, log_det = transform(
            self._inner, rest, inverse=inverse, training=training, conditional_input=conditional_input
        )
        return ops.concatenate([kept, out], axis=-1), log_det

    def _transform_recorded(self, x, *, inverse: bool, training: bool = False, conditional_input=None):
        c = x.shape[-1]
        if c is None:
            raise ValueError(f"FactorOut needs a known channel count; received shape {list(x.shape)}.")
        kept, rest = x[..., : c // 2], x[..., c // 2 :]
        out, log_det, record = record_transform(
            self._inner, rest, inverse=inverse, training=training, conditional_input=conditional_input
        )
        return ops.concatenate([kept, out], axis=-1), log_det, record

    def _reverse(
        self, y, g_y, g_log_det, record, *, inverse: bool, training: bool, grads: dict, conditional_input=None
    ):
        """The kept half passes through; the inner bijector rebuilds the other half."""
        half = y.shape[-1] // 2
        rest, g_rest = reverse_transform(
            self._inner,
            y[..., half:],
            g_y[..., half:],
            g_log_det,
            record,
            inverse=inverse,
            training=training,
            grads=grads,
            conditional_input=conditional_input,
        )
        return ops.concatenate([y[..., :half], rest], axis=-1), ops.concatenate([g_y[..., :half], g_rest], axis=-1)
