"""Base class for bijectors whose values and log-det come from one computation."""

from __future__ import annotations

from tfp_realnvp.backend import backend_name, tfb


def check_training(training) -> bool:
    """``training`` as a Python bool, or ``ValueError`` naming what was received.

    The batch-norm mode must be known when a function is traced (it selects which
    statistics the graph computes), so tensors are refused.
    """
    if isinstance(training, bool):
        return training
    try:
        import numpy as np

        if isinstance(training, np.bool_):
            return bool(training)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    raise ValueError(
        "training must be a Python bool (it selects batch statistics or moving averages "
        f"when the flow is traced); received {training!r} of type {type(training).__name__}."
    )


# ``tfb.Chain(...)`` and ``tfb.Invert(...)`` may return instances of private base classes
# (``_Chain``, ``_Invert``) when no parameter is a tensor; accept both.
_CHAIN_TYPES = tuple(c for c in tfb.Chain.__mro__ if c.__name__ in ("Chain", "_Chain"))
_INVERT_TYPES = tuple(c for c in tfb.Invert.__mro__ if c.__name__ in ("Invert", "_Invert"))


def transform(bijector, x, *, inverse: bool, training: bool):
    """``(value, log_det)`` of ``bijector`` applied to ``x`` in one pass.

    ``OnePassBijector`` steps, ``tfb.Chain`` and ``tfb.Invert`` are walked directly so
    that the batch-norm mode reaches every step; any other bijector is called through
    TFP with a 3-dimensional event.
    """
    if isinstance(bijector, OnePassBijector):
        return bijector._transform(x, inverse=inverse, training=training)
    if isinstance(bijector, _CHAIN_TYPES):
        # A Chain applies its last bijector first in ``forward``, its first in ``inverse``.
        steps = bijector.bijectors if inverse else list(reversed(bijector.bijectors))
        total = None
        for step in steps:
            x, log_det = transform(step, x, inverse=inverse, training=training)
            total = log_det if total is None else total + log_det
        return x, total
    if isinstance(bijector, _INVERT_TYPES):
        return transform(bijector.bijector, x, inverse=not inverse, training=training)
    if inverse:
        return bijector.inverse(x), bijector.inverse_log_det_jacobian(x, event_ndims=3)
    return bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims=3)


class OnePassBijector(tfb.Bijector):
    """A ``tfb.Bijector`` that computes a transformation and its log-det together.

    Subclasses implement ``_transform(x, *, inverse, training) -> (value, log_det)``.
    The log-det is stored in TFP's bijector cache under the input and the call's
    keyword arguments (``ildj`` and ``fldj``; the cache shares the entry between
    ``x`` and ``y``), so ``TransformedDistribution.log_prob``, ``sample`` and
    ``experimental_sample_and_log_prob`` evaluate every network once.

    Every method takes ``training`` (default ``False``): batch normalization uses
    batch statistics, and updates its moving averages, only when it is ``True``.
    Because it is a call argument it is part of TFP's cache key and of a
    ``tf.function``'s trace signature, so a result computed in one mode is never
    returned for the other. Through a distribution:
    ``dist.log_prob(x, bijector_kwargs={"training": True})``.

    The bijector owns the weights of its Keras layers: ``copy()`` returns the bijector
    itself (the same function, the same weights) and refuses parameter overrides, and
    the batch shape is ``[]``.
    """

    _owns_weights = True

    def _get_parameterization(self):
        # TFP's bijector cache is shared by all instances and keyed by bijector
        # equality, which by default compares constructor arguments. These bijectors
        # own their weights, so equal arguments do not make two instances equal: each
        # instance is its own cache key (as TFP does for bijectors without
        # ``parameters``). Hashing by identity also avoids walking nested bijectors
        # on every cache lookup.
        return id(self)

    @classmethod
    def _parameter_properties(cls, dtype):
        # No constructor argument is a batched tensor: the batch shape is [].
        return {}

    def copy(self, **override_parameters_kwargs):
        """Returns this bijector: its weights are its own, so a copy must share them.

        Raises:
            ValueError: when parameters are overridden; build a new bijector instead.
        """
        if override_parameters_kwargs:
            raise ValueError(
                f"{type(self).__name__} owns its weights, so a copy with other parameters "
                "would compute a different function; build a new bijector instead. "
                f"Received overrides {sorted(override_parameters_kwargs)}."
            )
        return self

    # Keras weights as TensorFlow sees them -------------------------------------------
    def _track_variables(self, keras_variables) -> None:
        """Makes the weights visible to ``tf.Module`` (``dist.trainable_variables``).

        A Keras 3 variable is not a ``tf.Variable``, so ``tf.Module`` (and with it every
        TFP distribution or bijector that contains this one) does not find it. On
        TensorFlow the ``tf.Variable`` behind each Keras variable is kept in an
        attribute that ``tf.Module`` walks but checkpoints do not (checkpoints reach
        the variables through the Keras layers).
        """
        if backend_name() != "tensorflow":
            return
        import tensorflow as tf

        tf_variables = tuple(v.value if not isinstance(v, tf.Variable) else v for v in keras_variables)
        self._tf_variables = self._no_dependency(tf_variables)

    def _transform(self, x, *, inverse: bool, training: bool = False):
        raise NotImplementedError(f"{type(self).__name__} must implement _transform.")

    def _mode(self, kwargs: dict) -> bool:
        unknown = sorted(set(kwargs) - {"training"})
        if unknown:
            raise ValueError(f"{self.name} takes the keyword argument 'training' only; received {unknown}.")
        return check_training(kwargs.get("training", False))

    # The cache is keyed by the keyword arguments exactly as TFP received them, so that
    # the attributes written by one call are the ones the next call with the same
    # arguments reads (for example ``forward(z)`` then ``inverse_log_det_jacobian(x)``
    # inside ``experimental_sample_and_log_prob``).
    def _forward(self, x, **kwargs):
        y, fldj = self._transform(x, inverse=False, training=self._mode(kwargs))
        self._cache.forward_attributes(x, **kwargs).update(fldj=fldj, ildj=-fldj)
        return y

    def _inverse(self, y, **kwargs):
        x, ildj = self._transform(y, inverse=True, training=self._mode(kwargs))
        self._cache.inverse_attributes(y, **kwargs).update(ildj=ildj, fldj=-ildj)
        return x

    def _forward_log_det_jacobian(self, x, **kwargs):
        cached = self._cache.forward_attributes(x, **kwargs)
        if "fldj" not in cached:
            self._forward(x, **kwargs)
        return cached["fldj"]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        cached = self._cache.inverse_attributes(y, **kwargs)
        if "ildj" not in cached:
            self._inverse(y, **kwargs)
        return cached["ildj"]
