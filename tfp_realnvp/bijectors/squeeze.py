"""Squeeze: 2x2 space-to-depth on ``[..., H, W, C]`` events."""

from __future__ import annotations

from keras import ops

from tfp_realnvp.bijectors.event_shapes import event_dims, format_event
from tfp_realnvp.internal.backend import ps, tfb
from tfp_realnvp.internal.validation import check_event_shape


class Squeeze(tfb.Bijector):
    """Space-to-depth: ``forward`` maps ``[H, W, C]`` to ``[H/2, W/2, 4C]``.

    Output channel ``(2 * di + dj) * C + c`` at ``(i, j)`` holds input pixel
    ``(2i + di, 2j + dj)``, channel ``c``. ``inverse`` is depth-to-space. A
    permutation, so ``log|det J| = 0``.

    In ``MultiScaleFlow`` the data-to-latent pass squeezes, so the flow (whose
    ``forward`` generates) holds ``tfb.Invert(Squeeze())``.

    The event-shape methods (``forward_event_shape``, ``inverse_event_shape`` and
    their ``_tensor`` versions) make the same checks as ``forward`` and ``inverse``.

    Raises:
        ValueError: naming the event shape, for a ``forward`` input whose height or
            width is odd, or an ``inverse`` input whose channels do not divide by 4.
    """

    def __init__(self, *, validate_args: bool = False, name: str = "squeeze"):
        parameters = dict(locals())
        super().__init__(
            forward_min_event_ndims=3,
            inverse_min_event_ndims=3,
            is_constant_jacobian=True,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        # No parameters: the batch shape is [].
        return {}

    @staticmethod
    def _check_forward_event(event) -> None:
        h, w, _ = event
        if (h is not None and h % 2) or (w is not None and w % 2):
            raise ValueError(f"Squeeze needs even height and width; received event shape {format_event(event)}.")

    @staticmethod
    def _check_inverse_event(event) -> None:
        c = event[-1]
        if c is not None and c % 4:
            raise ValueError(
                f"Squeeze.inverse needs a channel count divisible by 4; received event shape {format_event(event)}."
            )

    def _forward(self, x):
        h, w, c = check_event_shape(x.shape, name="Squeeze input")
        self._check_forward_event((h, w, c))
        batch = ops.shape(x)[:-3]
        y = ops.reshape(x, (-1, h // 2, 2, w // 2, 2, c))
        y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
        return ops.reshape(y, tuple(batch) + (h // 2, w // 2, 4 * c))

    def _inverse(self, y):
        h, w, c4 = check_event_shape(y.shape, name="Squeeze inverse input")
        self._check_inverse_event((h, w, c4))
        c = c4 // 4
        batch = ops.shape(y)[:-3]
        x = ops.reshape(y, (-1, h, w, 2, 2, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, tuple(batch) + (2 * h, 2 * w, c))

    def _forward_log_det_jacobian(self, x):
        return ops.zeros(ops.shape(x)[:-3], dtype=x.dtype)

    def _inverse_log_det_jacobian(self, y):
        return ops.zeros(ops.shape(y)[:-3], dtype=y.dtype)

    # Event shapes: the same checks as ``forward``/``inverse``, on static shapes.
    def _forward_event_shape(self, input_shape):
        event = event_dims(input_shape, name="Squeeze event shape")
        if event is None:
            return input_shape
        self._check_forward_event(event)
        h, w, c = event
        new = [h and h // 2, w and w // 2, c and 4 * c]
        return input_shape[:-3].concatenate(new)

    def _inverse_event_shape(self, output_shape):
        event = event_dims(output_shape, name="Squeeze event shape")
        if event is None:
            return output_shape
        self._check_inverse_event(event)
        h, w, c = event
        new = [h and 2 * h, w and 2 * w, c and c // 4]
        return output_shape[:-3].concatenate(new)

    def _forward_event_shape_tensor(self, input_shape):
        event = event_dims(input_shape, name="Squeeze event shape")
        if event is not None:
            self._check_forward_event(event)
        h, w, c = input_shape[-3], input_shape[-2], input_shape[-1]
        return ps.concat([input_shape[:-3], ps.stack([h // 2, w // 2, 4 * c])], axis=0)

    def _inverse_event_shape_tensor(self, output_shape):
        event = event_dims(output_shape, name="Squeeze event shape")
        if event is not None:
            self._check_inverse_event(event)
        h, w, c = output_shape[-3], output_shape[-2], output_shape[-1]
        return ps.concat([output_shape[:-3], ps.stack([2 * h, 2 * w, c // 4])], axis=0)
