"""Base class for bijectors whose values and log-det come from one computation."""

from __future__ import annotations

from tfp_realnvp.backend import tfb


class OnePassBijector(tfb.Bijector):
    """A ``tfb.Bijector`` that computes a transformation and its log-det together.

    Subclasses implement ``_transform(x, inverse=...) -> (value, log_det)``. The log-det
    is stored in TFP's bijector cache under the input (``ildj`` and ``fldj``; the cache
    shares the entry between ``x`` and ``y``), so ``TransformedDistribution.log_prob``,
    ``sample`` and ``experimental_sample_and_log_prob`` evaluate every network once.
    """

    def _get_parameterization(self):
        # TFP's bijector cache is shared by all instances and keyed by bijector
        # equality, which by default compares constructor arguments. These bijectors
        # own their weights, so equal arguments do not make two instances equal: each
        # instance is its own cache key (as TFP does for bijectors without
        # ``parameters``). Hashing by identity also avoids walking nested bijectors
        # on every cache lookup.
        return id(self)

    def _transform(self, x, *, inverse: bool):
        raise NotImplementedError(f"{type(self).__name__} must implement _transform.")

    def _forward(self, x):
        y, fldj = self._transform(x, inverse=False)
        self._cache.forward_attributes(x).update(fldj=fldj, ildj=-fldj)
        return y

    def _inverse(self, y):
        x, ildj = self._transform(y, inverse=True)
        self._cache.inverse_attributes(y).update(ildj=ildj, fldj=-ildj)
        return x

    def _forward_log_det_jacobian(self, x):
        cached = self._cache.forward_attributes(x)
        if "fldj" not in cached:
            self._forward(x)
        return cached["fldj"]

    def _inverse_log_det_jacobian(self, y):
        cached = self._cache.inverse_attributes(y)
        if "ildj" not in cached:
            self._inverse(y)
        return cached["ildj"]
