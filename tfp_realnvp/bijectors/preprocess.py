"""Pixels in ``[0, 256)`` to logit space, with the log-det of the change of variables."""

from __future__ import annotations

import math

import keras
from keras import ops

from tfp_realnvp.bijectors.one_pass import OnePassBijector
from tfp_realnvp.internal.arguments import check_number
from tfp_realnvp.internal.validation import assert_in_range


class LogitPreprocess(OnePassBijector):
    """Maps logit space (``forward``) to pixel values and back.

    * ``inverse``: ``p = alpha + (1 - 2 alpha) x / 256``, ``y = log(p) - log(1 - p)``;
      ``log|det dy/dx| = sum(log((1 - 2 alpha) / 256) - log p - log(1 - p))``, written
      as ``log((1 - 2 alpha) / 256) + softplus(y) + softplus(-y)`` per element.
    * ``forward``: ``x = 256 (sigmoid(y) - alpha) / (1 - 2 alpha)``.

    ``alpha`` keeps the logit away from the infinities at 0 and 256. The log-det is
    part of the density: ``log p(x) = log p(y) + ildj(x)``, and on pixel values in
    ``[0, 256)`` bits/dim follow as ``-log p(x) / (D ln 2)``.

    **Support.** ``forward`` maps all of logit space onto the open interval
    ``(-256 alpha / (1 - 2 alpha), 256 (1 - alpha) / (1 - 2 alpha))``, about
    ``(-14.2, 270.2)`` for ``alpha = 0.05``, which contains ``[0, 256)``. That interval
    is the bijector's domain: samples of a flow may fall slightly outside
    ``[0, 256)`` and their ``log_prob`` is still finite. In floating point, logits
    beyond about ``+-16`` (float32) would round to the ends of the interval, so
    ``forward`` clips its output to stay a few units of precision inside it: the
    inverse of every ``forward`` output is finite. Images are checked against
    ``[0, 256)`` by the image-facing API (``RealNVP``, the CLI, the SavedModel); with
    ``validate_args=True`` this bijector checks its own domain.

    Args:
        alpha: the margin, in ``(0, 0.5)``.
        validate_args: check that ``inverse`` inputs lie in the domain with no NaN.
        name: bijector name.
    """

    def __init__(self, *, alpha: float = 0.05, validate_args: bool = False, name: str = "logit_preprocess"):
        parameters = dict(locals())
        self._alpha = check_number(alpha, name="alpha", low=0.0, high=0.5)
        super().__init__(
            forward_min_event_ndims=3,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
        )

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def domain(self) -> tuple[float, float]:
        """The open interval of pixel values that ``inverse`` accepts."""
        a = self._alpha
        return -256.0 * a / (1.0 - 2.0 * a), 256.0 * (1.0 - a) / (1.0 - 2.0 * a)

    def _interior(self, dtype) -> tuple[float, float]:
        """The closed interval, strictly inside the domain in ``dtype``, that ``forward`` clips to.

        A few units of ``dtype``'s precision from each end: far enough that the
        difference to either end is not zero after rounding, so ``inverse`` of every
        ``forward`` output is finite.
        """
        eps = _EPS.get(keras.backend.standardize_dtype(dtype), _EPS["float32"])
        low, high = self.domain
        return low + 2.0 * eps * abs(low), high - 2.0 * eps * abs(high)

    def _transform(self, x, *, inverse: bool, training: bool = False):
        a = self._alpha
        log_slope = math.log((1.0 - 2.0 * a) / 256.0)
        low, high = self.domain
        if inverse:
            if self.validate_args:
                x = assert_in_range(x, low, high, name=f"{self.name} inputs")
            # y = log((x - low) / (high - x)), with low + high = 256, written as
            # +-log1p(2 |x - 128| / distance to the far end): every difference is exact
            # near the ends of the domain, and y is accurate near x = 128.
            upper = ops.log1p(2.0 * (x - 128.0) / (high - x))
            lower = -ops.log1p(2.0 * (128.0 - x) / (x - low))
            y = ops.where(x >= 128.0, upper, lower)
            per_element = log_slope + ops.softplus(y) + ops.softplus(-y)
            return y, ops.sum(per_element, axis=(-3, -2, -1))
        per_element = log_slope + ops.softplus(x) + ops.softplus(-x)
        pixels = 256.0 * (ops.sigmoid(x) - a) / (1.0 - 2.0 * a)
        # Logits beyond about +-16 (float32) round to the ends of the domain, where
        # the inverse is infinite; such pixels stay a few units of precision inside.
        inner_low, inner_high = self._interior(x.dtype)
        pixels = ops.clip(pixels, inner_low, inner_high)
        return pixels, -ops.sum(per_element, axis=(-3, -2, -1))


# Machine epsilon of the float dtypes the flow computes in.
_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}
