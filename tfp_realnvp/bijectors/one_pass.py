"""Base class for bijectors whose values and log-det come from one computation."""

from __future__ import annotations

from collections.abc import Iterator

from tfp_realnvp.bijectors.call_kwargs import call_mode, same_kwargs, step_context
from tfp_realnvp.bijectors.event_shapes import event_dims, static_dims
from tfp_realnvp.bijectors.pull_back import pull_back_step
from tfp_realnvp.bijectors.walk import Leaf, leaves
from tfp_realnvp.internal.backend import (
    IdentityKeyedBijector,
    backend_name,
    cached_attributes,
    cached_calls,
    in_multi_replica_step,
    tensorflow_variables,
)


def apply_leaf(leaf: Leaf, x, *, training: bool, conditional_input=None):
    """``(value, log_det)`` of one step of a walk (``walk.leaves``) applied to ``x``.

    A ``OnePassBijector`` runs its ``_transform``, so the batch-norm mode and, for a
    conditional step, the context reach it; any other bijector is called through TFP
    with a 3-dimensional event (and receives neither).
    """
    step, inverse = leaf
    if isinstance(step, OnePassBijector):
        step._check_input(x, inverse=inverse)
        return step._transform(x, inverse=inverse, training=training, **step_context(step, conditional_input))
    if inverse:
        return step.inverse(x), step.inverse_log_det_jacobian(x, event_ndims=3)
    return step.forward(x), step.forward_log_det_jacobian(x, event_ndims=3)


def transform(bijector, x, *, inverse: bool, training: bool, conditional_input=None):
    """``(value, log_det)`` of ``bijector`` applied to ``x`` in one pass.

    ``tfb.Chain`` and ``tfb.Invert`` are walked (``walk.leaves``) and each step applied
    with ``apply_leaf``, so that the batch-norm mode and the context reach every
    ``OnePassBijector`` step.

    Args:
        bijector: the bijector to apply.
        x: its input.
        inverse: apply ``inverse`` (else ``forward``).
        training: the batch-norm mode.
        conditional_input: the context ``[..., K]`` of conditional steps, or ``None``.
            Only steps whose ``conditional`` is true receive it.

    Returns:
        The value and the sum of the steps' log-dets (``None`` for a chain of no step).
    """
    total = None
    for leaf in leaves(bijector, inverse=inverse):
        x, log_det = apply_leaf(leaf, x, training=training, conditional_input=conditional_input)
        total = log_det if total is None else total + log_det
    return x, total


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
    """The ``OnePassBijector`` steps of ``bijector``, looking through ``tfb.Chain``/``tfb.Invert``,
    in the order they are written in."""
    for step, _ in leaves(bijector, inverse=True, order="declared"):
        if isinstance(step, OnePassBijector):
            yield step


def check_nested_event_shape(bijector, event, *, inverse: bool):
    """The event shape that ``bijector`` maps ``event`` to, or ``ValueError`` if it rejects it.

    ``tfb.Chain`` and ``tfb.Invert`` are walked as ``transform`` walks them: a
    ``OnePassBijector`` step checks the event (and keeps it), any other bijector answers
    through its own ``forward_event_shape``/``inverse_event_shape``.
    """
    event = tuple(event)
    for step, step_inverse in leaves(bijector, inverse=inverse):
        if isinstance(step, OnePassBijector):
            step._validate_event_shape(event, inverse=step_inverse)
            continue
        method = step.inverse_event_shape if step_inverse else step.forward_event_shape
        out = static_dims(method(list(event)))
        event = tuple(out[-3:]) if out is not None else (None, None, None)
    return event


class OnePassBijector(IdentityKeyedBijector):
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
    overrides, the batch shape is ``[]``, and it equals only itself, so TFP's cache never
    answers it with the results of another instance built alike
    (``IdentityKeyedBijector``).
    """

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
        if backend_name() == "tensorflow":
            self._tf_variables = self._no_dependency(tensorflow_variables(keras_variables))

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
        for call in cached_calls(self._cache):
            if id(call.owner) not in owners:
                continue
            if keep_training_results and isinstance(call.kwargs, dict) and call.kwargs.get("training") is True:
                continue
            this_call = call.owner is self and call.name == fn_name and same_kwargs(call.kwargs, kwargs)
            if this_call and call.input() is current:
                continue
            call.forget()

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

    def _run(self, x, kwargs: dict, *, inverse: bool):
        training, context = call_mode(kwargs, name=self.name, conditional=self.conditional)
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
        cached_attributes(self._cache, x, kwargs, inverse=False).update(fldj=fldj, ildj=-fldj)
        return y

    def _inverse(self, y, **kwargs):
        x, ildj = self._run(y, kwargs, inverse=True)
        cached_attributes(self._cache, y, kwargs, inverse=True).update(ildj=ildj, fldj=-ildj)
        return x

    def _forward_log_det_jacobian(self, x, **kwargs):
        cached = cached_attributes(self._cache, x, kwargs, inverse=False)
        if "fldj" not in cached:
            self._forward(x, **kwargs)
        return cached["fldj"]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        cached = cached_attributes(self._cache, y, kwargs, inverse=True)
        if "ildj" not in cached:
            self._inverse(y, **kwargs)
        return cached["ildj"]
