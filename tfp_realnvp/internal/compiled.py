"""Compiled inference functions over a Keras model's variables, on either backend."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from tfp_realnvp.internal.backend import backend_name


class CompiledFunction:
    """``fn(*args)`` compiled once per input signature, reading the model's current weights.

    * TensorFlow: one ``tf.function`` (optionally XLA-compiled) per value of the static
      arguments and per dtype and inner shape of the others, traced with a fixed input
      signature whose leading (batch) axis is unknown: every batch size runs the same
      trace, so nothing is ever retraced. Variables are read live.
    * JAX: ``jax.jit`` of a pure function that receives the model's variable values and
      runs ``fn`` inside a ``keras.StatelessScope``, so new weights never retrace; every
      new input shape compiles a new version (``shape_polymorphic`` is false), which
      callers bound by padding batches to a few sizes.

    Arguments listed in ``static_argnums`` must be hashable Python values (e.g. a sample
    count); a new value compiles a new version, a new array of the same shape does not.
    The other arguments are arrays, tensors or nested tuples, lists and dicts of them.
    """

    def __init__(
        self, model: keras.Model, fn: Callable, *, static_argnums: Sequence[int] = (), jit_compile: bool = False
    ):
        self._model = model
        self._fn = fn
        self._static = tuple(static_argnums)
        self._backend = backend_name()
        self._functions = _FunctionPerSignature(jit_compile=bool(jit_compile))
        if self._backend != "tensorflow":
            import jax

            def pure(values, *args):
                self._functions.traces += 1  # Python code runs only while tracing
                mapping = list(zip(self._model.variables, values))
                with keras.StatelessScope(state_mapping=mapping):
                    return fn(*args)

            self._compiled = jax.jit(pure, static_argnums=tuple(i + 1 for i in self._static))

    @property
    def traces(self) -> int:
        """How many times the function has been traced (compiled) so far."""
        return self._functions.traces

    @property
    def shape_polymorphic(self) -> bool:
        """Whether one compiled version serves every batch size (TensorFlow); on JAX
        every new input shape compiles a new one."""
        return self._backend == "tensorflow"

    def __call__(self, *args):
        if self._backend == "tensorflow":
            return self._tensorflow_call(args)
        return self._compiled([v.value for v in self._model.variables], *args)

    def _tensorflow_call(self, args: tuple):
        """Runs the ``tf.function`` of these static values and input signature, made on first use."""
        import tensorflow as tf

        static = {i: args[i] for i in self._static}
        dynamic = [arg for i, arg in enumerate(args) if i not in static]
        signature = tf.nest.map_structure(lambda value: _batch_spec(tf, value), dynamic)

        def fill(*inputs):
            rest = iter(inputs)
            return self._fn(*(static[i] if i in static else next(rest) for i in range(len(args))))

        return self._functions.get((tuple(static.items()), repr(signature)), signature, fill)(*dynamic)


class SharedTrace:
    """``fn(*tensors)`` traced once per input signature and called by every graph that needs it.

    TensorFlow builds a graph op by op in Python (about a millisecond an op), so a flow
    traced into each of several functions (``log_prob``, ``encode``, the signatures of a
    SavedModel, Keras' test step) costs that many times one trace. Called inside a traced
    function on TensorFlow, ``fn`` becomes one nested ``tf.function`` per dtype and inner
    shape of the inputs (leading axis unknown), traced on first use; each calling graph
    holds a call of it, and a SavedModel stores it once. Eagerly, on JAX (``jax.jit``
    traces each compiled function whole) and under a ``tf.distribute`` strategy (each
    replica reads its own copy of the variables), ``fn`` runs inline.

    The tensors must have a rank of at least 1; their leading axis may differ between calls.
    An argument may be ``None`` (an absent optional input): it is passed on as ``None``,
    and each pattern of absent arguments has traces of its own.
    """

    def __init__(self, fn: Callable):
        self._fn = fn
        self._functions = _FunctionPerSignature()

    @property
    def traces(self) -> int:
        """How many nested functions have been traced so far."""
        return self._functions.traces

    def __call__(self, *tensors):
        if backend_name() != "tensorflow":
            return self._fn(*tensors)
        import tensorflow as tf

        if not tf.inside_function() or tf.distribute.has_strategy():
            return self._fn(*tensors)
        present = [tensor for tensor in tensors if tensor is not None]
        signature = [_batch_spec(tf, tensor) for tensor in present]
        absent = tuple(i for i, tensor in enumerate(tensors) if tensor is None)

        def fill(*inputs):
            rest = iter(inputs)
            return self._fn(*(None if i in absent else next(rest) for i in range(len(tensors))))

        return self._functions.get((absent, repr(signature)), signature, fill)(*present)


class _FunctionPerSignature:
    """TensorFlow: one ``tf.function`` per key (static values and input signature), made
    on first use; ``traces`` counts the traces of all of them (and of a JAX owner's
    ``jax.jit``, which adds to it itself).

    Args:
        jit_compile: the functions' ``jit_compile``; ``None`` leaves it to TensorFlow
            (a function nested in an XLA-compiled one is compiled with it).
    """

    def __init__(self, *, jit_compile: bool | None = None):
        self.traces = 0
        self._jit_compile = jit_compile
        self._functions: dict[Any, Callable] = {}

    def get(self, key: Any, signature: list, fn: Callable) -> Callable:
        """The function of ``key``, made from ``fn`` and ``signature`` when it is new.

        Args:
            key: hashable; equal keys share one function.
            signature: the ``tf.TensorSpec`` list of its inputs.
            fn: what it traces.

        Returns:
            The ``tf.function``.
        """
        if key not in self._functions:
            import tensorflow as tf

            def traced(*inputs):
                self.traces += 1  # Python code runs only while tracing
                return fn(*inputs)

            # A partial has no code object of its own, so TensorFlow keeps the retracing
            # statistics of each compiled function apart instead of pooling every
            # function made here (they would share the code of ``traced``).
            self._functions[key] = tf.function(
                functools.partial(traced), input_signature=signature, jit_compile=self._jit_compile, autograph=False
            )
        return self._functions[key]


def _batch_spec(tf, value):
    """The ``tf.TensorSpec`` of ``value`` with an unknown leading axis (scalars keep their shape)."""
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        value = np.asarray(value)
    shape = list(value.shape)
    if shape:
        shape[0] = None
    return tf.TensorSpec(shape, tf.as_dtype(value.dtype))
