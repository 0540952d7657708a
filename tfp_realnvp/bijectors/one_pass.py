"""Base class for bijectors whose values and log-det come from one computation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tfp_realnvp.internal.backend import backend_name, in_multi_replica_step, is_concrete, tfb


def check_training(training) -> bool:
    """``training`` as a Python bool, or ``ValueError`` naming what was received.

    The batch-norm mode must be known when a function is traced (it selects which
    statistics the graph computes), so tensors are refused.
    """
    if isinstance(training, (bool, np.bool_)):
        return bool(training)
    raise ValueError(
        "training must be a Python bool (it selects batch statistics or moving averages "
        f"when the flow is traced); received {training!r} of type {type(training).__name__}."
    )


# Event shapes ----------------------------------------------------------------------------
def static_dims(shape) -> list[int | None] | None:
    """The statically known dimensions of a shape, or ``None`` when its rank is unknown.

    Args:
        shape: a ``TensorShape`` (either substrate), a list or tuple of ints (``None``
            for an unknown dimension), or an int32 shape tensor / array.

    Returns:
        A list with an int for each known dimension and ``None`` for each unknown one.
    """
    if hasattr(shape, "as_list") and hasattr(shape, "rank"):  # TensorShape
        return None if shape.rank is None else list(shape.as_list())
    if isinstance(shape, (list, tuple)):
        return [None if d is None else int(d) for d in shape]
    if backend_name() == "tensorflow":
        import tensorflow as tf

        if tf.is_tensor(shape):
            value = tf.get_static_value(shape, partial=True)
            if value is None:
                return None
            return [None if d is None else int(d) for d in np.reshape(np.asarray(value, dtype=object), [-1])]
    if not is_concrete(shape):
        return None
    return [int(d) for d in np.reshape(np.asarray(shape), [-1])]


def event_dims(shape, *, name: str) -> tuple[int | None, int | None, int | None] | None:
    """The ``(H, W, C)`` of a shape whose last three dimensions are the event.

    Unknown dimensions come back as ``None``; a shape of unknown rank gives ``None``.

    Raises:
        ValueError: naming the shape, when its rank is below 3 or a known event
            dimension is not positive.
    """
    dims = static_dims(shape)
    if dims is None:
        return None
    if len(dims) < 3:
        raise ValueError(f"{name} needs at least rank 3 (..., height, width, channels); received shape {dims}.")
    event = tuple(dims[-3:])
    if any(d is not None and d <= 0 for d in event):
        raise ValueError(f"{name} needs positive event dimensions; received shape {dims}.")
    return event


def format_event(event) -> str:
    """``[H, W, C]`` with ``None`` for unknown dimensions, as the error messages show shapes."""
    return str([d for d in event])


def check_built_event(event, built, *, name: str, what: str = "event shape") -> None:
    """Refuses an event that contradicts the (known) event a bijector was built for."""
    if built is None:
        return
    if any(d is not None and d != b for d, b in zip(event, built)):
        raise ValueError(f"{name} was built for {what} {list(built)}; received {what} {format_event(event)}.")


def same_kwargs(a, b) -> bool:
    """Whether two keyword-argument dicts hold the same keys and the same values.

    Tensors (a context) compare by identity, as TFP's cache keys them; ``==`` on two
    tensors would compare them element by element.
    """
    if not isinstance(a, dict) or not isinstance(b, dict) or set(a) != set(b):
        return False
    for key in a:
        x, y = a[key], b[key]
        if x is y:
            continue
        scalars = (bool, int, float, str, np.generic, type(None))
        if isinstance(x, scalars) and isinstance(y, scalars) and x == y:
            continue
        return False
    return True


# ``tfb.Chain(...)`` and ``tfb.Invert(...)`` may return instances of private base classes
# (``_Chain``, ``_Invert``) when no parameter is a tensor; accept both.
CHAIN_TYPES = tuple(c for c in tfb.Chain.__mro__ if c.__name__ in ("Chain", "_Chain"))
INVERT_TYPES = tuple(c for c in tfb.Invert.__mro__ if c.__name__ in ("Invert", "_Invert"))


CONDITIONAL_INPUT = "conditional_input"
"""Name of the keyword argument that carries the context of a conditional bijector
(the name TFP's own conditional bijectors use)."""


def step_context(step, conditional_input) -> dict:
    """The context keyword a step's ``_transform`` takes: ``{"conditional_input": c}`` for
    a conditional step, ``{}`` for any other (which receives no context).

    Raises:
        ValueError: for a conditional step and no context.
    """
    if not getattr(step, "conditional", False):
        return {}
    if conditional_input is None:
        raise ValueError(f"{step.name} is conditional and needs conditional_input; received None.")
    return {"conditional_input": conditional_input}


def transform(bijector, x, *, inverse: bool, training: bool, conditional_input=None):
    """``(value, log_det)`` of ``bijector`` applied to ``x`` in one pass.

    ``OnePassBijector`` steps, ``tfb.Chain`` and ``tfb.Invert`` are walked directly so
    that the batch-norm mode and the context reach every step; any other bijector is
    called through TFP with a 3-dimensional event.

    Args:
        bijector: the bijector to apply.
        x: its input.
        inverse: apply ``inverse`` (else ``forward``).
        training: the batch-norm mode.
        conditional_input: the context ``[..., K]`` of conditional steps, or ``None``.
            Only steps whose ``conditional`` is true receive it.
    """
    if isinstance(bijector, OnePassBijector):
        bijector._check_input(x, inverse=inverse)
        return bijector._transform(x, inverse=inverse, training=training, **step_context(bijector, conditional_input))
    if isinstance(bijector, CHAIN_TYPES):
        # A Chain applies its last bijector first in ``forward``, its first in ``inverse``.
        steps = bijector.bijectors if inverse else list(reversed(bijector.bijectors))
        total = None
        for step in steps:
            x, log_det = transform(step, x, inverse=inverse, training=training, conditional_input=conditional_input)
            total = log_det if total is None else total + log_det
        return x, total
    if isinstance(bijector, INVERT_TYPES):
        return transform(
            bijector.bijector, x, inverse=not inverse, training=training, conditional_input=conditional_input
        )
    if inverse:
        return bijector.inverse(x), bijector.inverse_log_det_jacobian(x, event_ndims=3)
    return bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims=3)


def record_step(step: OnePassBijector, x, *, inverse: bool, training: bool, conditional_input=None):
    """``(value, log_det, record)`` of one step: its ``transform`` plus what
    ``reverse_step`` needs to rebuild ``x`` from the value (the level-2 recompute of
    ``tfp_realnvp.bijectors.reversible``)."""
    step._check_input(x, inverse=inverse)
    return step._transform_recorded(x, inverse=inverse, training=training, **step_context(step, conditional_input))


def reverse_step(
    step: OnePassBijector,
    y,
    g_y,
    g_log_det,
    record,
    *,
    inverse: bool,
    training: bool,
    grads: dict,
    conditional_input=None,
):
    """``(x, g_x)``: the input of one step rebuilt from its output ``y``, and its cotangent.

    Args:
        step: the step ``record_step`` applied.
        y: its output.
        g_y: the cotangent of ``y``.
        g_log_det: the cotangent of the step's log-det.
        record: what ``record_step`` returned with ``y``.
        inverse: the direction it was applied in.
        training: the batch-norm mode it was applied in.
        grads: ``id(variable) -> gradient``; the step adds its weights' gradients.
        conditional_input: the context of a conditional step, or ``None``.
    """
    context = step_context(step, conditional_input)
    return step._reverse(y, g_y, g_log_det, record, inverse=inverse, training=training, grads=grads, **context)


def one_pass_steps(bijector) -> Iterator[OnePassBijector]:
    """The ``OnePassBijector`` steps of ``bijector``, looking through ``tfb.Chain``/``tfb.Invert``."""
    if isinstance(bijector, OnePassBijector):
        yield bijector
    elif isinstance(bijector, CHAIN_TYPES):
        for step in bijector.bijectors:
            yield from one_pass_steps(step)
    elif isinstance(bijector, INVERT_TYPES):
        yield from one_pass_steps(bijector.bijector)


def check_nested_event_shape(bijector, event, *, inverse: bool):
    """The event shape that ``bijector`` maps ``event`` to, or ``ValueError`` if it rejects it.

    ``OnePassBijector`` steps, ``tfb.Chain`` and ``tfb.Invert`` are walked as
    ``transform`` walks them; any other bijector answers through its own
    ``forward_event_shape``/``inverse_event_shape``.
    """
    if isinstance(bijector, OnePassBijector):
        bijector._validate_event_shape(event, inverse=inverse)
        return tuple(event)
    if isinstance(bijector, CHAIN_TYPES):
        steps = bijector.bijectors if inverse else list(reversed(bijector.bijectors))
        for step in steps:
            event = check_nested_event_shape(step, event, inverse=inverse)
        return event
    if isinstance(bijector, INVERT_TYPES):
        return check_nested_event_shape(bijector.bijector, event, inverse=not inverse)
    method = bijector.inverse_event_shape if inverse else bijector.forward_event_shape
    out = static_dims(method(list(event)))
    return tuple(out[-3:]) if out is not None else (None, None, None)


class OnePassBijector(tfb.Bijector):
    """A ``tfb.Bijector`` that computes a transformation and its log-det together.

    Subclasses implement ``_transform(x, *, inverse, training) -> (value, log_det)``
    (conditional ones, whose ``conditional`` is true, also take ``conditional_input``)
    and, when they accept only some event shapes, ``_validate_event_shape``.
    The log-det is stored in TFP's bijector cache under the input and the call's
    keyword arguments (``ildj`` and ``fldj``; the cache shares the entry between
    ``x`` and ``y``), so ``TransformedDistribution.log_prob``, ``sample`` and
    ``experimental_sample_and_log_prob`` evaluate every network once.

    **Mode.** Every method takes ``training`` (default ``False``): batch normalization
    uses batch statistics, and updates its moving averages, only when it is ``True``.
    Because it is a call argument it is part of TFP's cache key and of a
    ``tf.function``'s trace signature, so a result computed in one mode is never
    returned for the other. Through a distribution:
    ``dist.log_prob(x, bijector_kwargs={"training": True})``. A training-mode call that
    updates moving averages also drops every other cached result of this bijector, so
    an inference-mode result cached before the update is computed again with the new
    averages. (As for every TFP bijector, a cached result otherwise lives as long as
    its input and output tensors do: after changing the weights, transform new tensors.)

    **Context.** A conditional step (``conditional`` true: an ``AffineCoupling`` or a
    ``MultiScaleFlow`` built with ``context_dim``) also takes ``conditional_input``, a
    float context ``[..., K]`` whose batch dimensions broadcast against those of the
    input: ``dist.log_prob(x, bijector_kwargs={"conditional_input": c})``. Like
    ``training`` it is part of TFP's cache key; TFP keys a tensor by its identity, so a
    result computed for one context tensor is never returned for another. A conditional
    step refuses a call without it, an unconditional one a call with it
    (``ValueError``).

    **Shapes.** The event shape is unchanged. ``forward_event_shape``,
    ``inverse_event_shape`` and their ``_tensor`` versions reject (``ValueError``
    naming the shape) every event shape that ``forward``/``inverse`` reject.

    **Weights.** The bijector owns the weights of its Keras layers: ``copy()`` returns
    the bijector itself (the same function, the same weights) and refuses parameter
    overrides, and the batch shape is ``[]``.
    """

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

        found = []
        for v in keras_variables:
            # The stored ``tf.Variable`` itself: ``v.value`` may be an autocast copy or,
            # inside a ``StatelessScope``, a substituted value.
            inner = v if isinstance(v, tf.Variable) else getattr(v, "_value", None)
            if isinstance(inner, tf.Variable):
                found.append(inner)
        self._tf_variables = self._no_dependency(tuple(found))

    # Nested state ------------------------------------------------------------------
    def _one_pass_parts(self) -> Iterator[OnePassBijector]:
        """The ``OnePassBijector`` steps inside this one (none by default)."""
        return iter(())

    @property
    def layers(self) -> list:
        """The Keras layers of this bijector's steps, each once."""
        seen, out = set(), []
        for part in self._one_pass_parts():
            for layer in part.layers:
                if id(layer) not in seen:
                    seen.add(id(layer))
                    out.append(layer)
        return out

    @property
    def variables(self):
        """Every Keras weight (trainable weights and batch-norm statistics)."""
        return [v for layer in self.layers for v in layer.weights]

    @property
    def trainable_variables(self):
        return [v for layer in self.layers for v in layer.trainable_weights]

    @property
    def non_trainable_variables(self):
        return [v for layer in self.layers for v in layer.non_trainable_weights]

    def _has_moving_statistics(self) -> bool:
        """True when a training-mode call may update state (batch-norm statistics)."""
        return any(part._has_moving_statistics() for part in self._one_pass_parts())

    def _drop_cached_results(self, current, fn_name: str, kwargs: dict) -> None:
        """Forgets every cached result of this bijector and its parts but the current one.

        Called after a training-mode call changed moving averages: results cached
        before it (inference-mode ones above all) describe the old statistics. Inside
        the step of a multi-replica strategy the replicas run the same bijectors at
        once, each in training mode on its own share of the batch: their training-mode
        results stay, or one replica would throw away what another has just computed
        and must read back (its log-det), and then run its networks a second time.
        """
        owners = {id(self)} | {id(part) for part in self._walk_parts()}
        keep_training_results = in_multi_replica_step()
        storage = self._cache.storage
        for key in list(storage.keys()):
            if not key.alive:
                continue
            owner, _, name, key_kwargs = key.subkey
            if id(owner) not in owners:
                continue
            if keep_training_results and isinstance(key_kwargs, dict) and key_kwargs.get("training") is True:
                continue
            if owner is self and name == fn_name and same_kwargs(key_kwargs, kwargs) and key() is current:
                continue
            key.cancel()
            storage.pop(key, None)

    def _walk_parts(self) -> Iterator[OnePassBijector]:
        for part in self._one_pass_parts():
            yield part
            yield from part._walk_parts()

    # Event shapes --------------------------------------------------------------------
    def _validate_event_shape(self, event, *, inverse: bool) -> None:
        """Raises ``ValueError`` naming ``event`` when ``forward`` (``inverse``) rejects it.

        Args:
            event: ``(H, W, C)``, each an int or ``None`` when unknown; only known
                dimensions are checked.
            inverse: check the input of ``inverse`` (else of ``forward``).
        """

    def _check_input(self, x, *, inverse: bool) -> None:
        """Checks the input of ``forward``/``inverse``: rank >= 3 and an event it accepts."""
        event = event_dims(x.shape, name=f"{self.name} input")
        if event is not None:
            self._validate_event_shape(event, inverse=inverse)

    def _checked_shape(self, shape, *, inverse: bool):
        event = event_dims(shape, name=f"{self.name} event shape")
        if event is not None:
            self._validate_event_shape(event, inverse=inverse)
        return shape

    def _forward_event_shape(self, input_shape):
        return self._checked_shape(input_shape, inverse=False)

    def _inverse_event_shape(self, output_shape):
        return self._checked_shape(output_shape, inverse=True)

    def _forward_event_shape_tensor(self, input_shape):
        return self._checked_shape(input_shape, inverse=False)

    def _inverse_event_shape_tensor(self, output_shape):
        return self._checked_shape(output_shape, inverse=True)

    # Transformations -----------------------------------------------------------------
    def _transform(self, x, *, inverse: bool, training: bool = False):
        raise NotImplementedError(f"{type(self).__name__} must implement _transform.")

    # Invertible recomputation (``bijectors.reversible``) ---------------------------------
    def _transform_recorded(self, x, *, inverse: bool, training: bool = False, **context):
        """``(value, log_det, record)``: ``_transform`` plus what ``_reverse`` needs to
        rebuild ``x`` (nothing by default: the inverse alone rebuilds it). ``context``
        is ``conditional_input=...`` for a conditional step, else empty."""
        value, log_det = self._transform(x, inverse=inverse, training=training, **context)
        return value, log_det, None

    def _reverse(self, y, g_y, g_log_det, record, *, inverse: bool, training: bool, grads: dict, **context):
        """``(x, g_x)``: the input of ``_transform(x, inverse=inverse)`` rebuilt from its
        output ``y``, and the cotangent of ``x`` given those of ``y`` and of the log-det.

        The default rebuilds ``x`` with the opposite direction in inference mode (right
        for steps whose inverse does not depend on the batch-norm mode) and pulls the
        cotangents back by autodiff through the step at ``x``, adding the gradients
        of its weights to ``grads`` (``id(variable) -> gradient``).
        """
        from tfp_realnvp.bijectors.reversible import pull_back_step

        x, _ = self._transform(y, inverse=not inverse, training=False, **context)
        g_x = pull_back_step(
            self,
            lambda x, **c: self._transform(x, inverse=inverse, training=training, **c),
            x,
            (g_y, g_log_det),
            grads=grads,
            **context,
        )
        return x, g_x

    @property
    def conditional(self) -> bool:
        """Whether this bijector takes (and needs) ``conditional_input``."""
        return False

    def _mode(self, kwargs: dict) -> tuple[bool, object]:
        """``(training, conditional_input)`` from a call's keyword arguments.

        Raises:
            ValueError: for an unknown keyword, a context given to an unconditional
                bijector, or none given to a conditional one, naming what was received.
        """
        allowed = {"training", CONDITIONAL_INPUT} if self.conditional else {"training"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            if CONDITIONAL_INPUT in unknown:
                raise ValueError(
                    f"{self.name} is not conditional (build it with context_dim to condition it) and takes "
                    f"no conditional_input; received keyword arguments {sorted(kwargs)}."
                )
            raise ValueError(
                f"{self.name} takes the keyword argument{'s' if len(allowed) > 1 else ''} "
                f"{' and '.join(repr(k) for k in sorted(allowed, reverse=True))} only; received {unknown}."
            )
        context = kwargs.get(CONDITIONAL_INPUT)
        if self.conditional and context is None:
            raise ValueError(
                f"{self.name} is conditional and needs conditional_input (a context [..., K]); "
                f"received keyword arguments {sorted(kwargs)}."
            )
        return check_training(kwargs.get("training", False)), context

    def _run(self, x, kwargs: dict, *, inverse: bool):
        training, context = self._mode(kwargs)
        self._check_input(x, inverse=inverse)
        if self.conditional:
            value, log_det = self._transform(x, inverse=inverse, training=training, conditional_input=context)
        else:
            value, log_det = self._transform(x, inverse=inverse, training=training)
        if training and self._has_moving_statistics():
            self._drop_cached_results(x, "_inverse" if inverse else "_forward", kwargs)
        return value, log_det

    # The cache is keyed by the keyword arguments exactly as TFP received them, so that
    # the attributes written by one call are the ones the next call with the same
    # arguments reads (for example ``forward(z)`` then ``inverse_log_det_jacobian(x)``
    # inside ``experimental_sample_and_log_prob``).
    def _forward(self, x, **kwargs):
        y, fldj = self._run(x, kwargs, inverse=False)
        self._cache.forward_attributes(x, **kwargs).update(fldj=fldj, ildj=-fldj)
        return y

    def _inverse(self, y, **kwargs):
        x, ildj = self._run(y, kwargs, inverse=True)
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
