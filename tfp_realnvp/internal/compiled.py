"""Compiled inference functions over a Keras model's variables, on either backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from tfp_realnvp.internal.backend import backend_name


class CompiledFunction:
    """``fn(*args)`` compiled once per input signature, reading the model's current weights.

    * TensorFlow: a ``tf.function`` (optionally XLA-compiled); variables are read live.
    * JAX: ``jax.jit`` of a pure function that receives the model's variable values and
      runs ``fn`` inside a ``keras.StatelessScope``, so new weights never retrace.

    Arguments listed in ``static_argnums`` must be hashable Python values (e.g. a sample
    count); a new value compiles a new version, a new array of the same shape does not.
    """

    def __init__(
        self, model: keras.Model, fn: Callable, *, static_argnums: Sequence[int] = (), jit_compile: bool = False
    ):
        self._model = model
        self._fn = fn
        self._static = tuple(static_argnums)
        self._backend = backend_name()
        self._traces = 0
        if self._backend == "tensorflow":
            import tensorflow as tf

            def traced(*args):
                self._traces += 1  # Python code runs only while tracing
                return fn(*args)

            self._compiled = tf.function(traced, reduce_retracing=True, jit_compile=jit_compile, autograph=False)
        else:
            import jax

            def pure(values, *args):
                self._traces += 1  # Python code runs only while tracing
                mapping = list(zip(self._model.variables, values))
                with keras.StatelessScope(state_mapping=mapping):
                    return fn(*args)

            self._compiled = jax.jit(pure, static_argnums=tuple(i + 1 for i in self._static))

    @property
    def traces(self) -> int:
        """How many times the function has been traced (compiled) so far."""
        return self._traces

    def __call__(self, *args):
        if self._backend == "tensorflow":
            return self._compiled(*args)
        return self._compiled([v.value for v in self._model.variables], *args)
