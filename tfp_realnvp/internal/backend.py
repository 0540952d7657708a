"""The TensorFlow Probability namespace that matches the active Keras backend.

Keras 3 picks its backend once, from ``KERAS_BACKEND`` or ``keras.json``. TFP ships
one substrate per array library; this module imports the one that matches, so every
other module writes ``from tfp_realnvp.internal.backend import tfb, tfd`` and works on both.

* ``tensorflow`` -> ``tensorflow_probability``
* ``jax`` -> ``tensorflow_probability.substrates.jax`` (needs ``tfp-nightly`` with
  current JAX releases)
"""

from __future__ import annotations

import types

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")


def backend_name() -> str:
    """Returns the name of the active Keras backend."""
    return keras.backend.backend()


def load_tfp(backend: str | None = None) -> types.ModuleType:
    """Imports the TFP substrate for ``backend`` (default: the active Keras backend).

    Args:
        backend: ``"tensorflow"`` or ``"jax"``; ``None`` uses ``keras.backend.backend()``.

    Returns:
        The ``tensorflow_probability`` module (or its JAX substrate).

    Raises:
        ValueError: if the backend has no TFP substrate.
    """
    backend = backend or backend_name()
    if backend == "tensorflow":
        import tensorflow_probability as module
    elif backend == "jax":
        from tensorflow_probability.substrates import jax as module
    else:
        raise ValueError(
            f"tfp_realnvp runs on the Keras backends {SUPPORTED_BACKENDS}; received KERAS_BACKEND={backend!r}."
        )
    return module


def is_concrete(x) -> bool:
    """True when ``x`` holds a value now (eager TF tensor, NumPy or JAX array, not a tracer)."""
    if backend_name() == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and (not tf.is_tensor(x) or hasattr(x, "numpy"))
    import jax

    return not isinstance(x, jax.core.Tracer)


# Keras 3 has no public way to ask whether a StatelessScope is active or to switch off
# the autocasting of variable reads; the two functions below are the package's only uses
# of Keras' internal modules (tests/test_layout.py keeps it so), pinned by constraints.txt.
def in_stateless_scope() -> bool:
    """True inside a ``keras.StatelessScope`` (where variable updates are collected)."""
    from keras.src.backend.common.stateless_scope import in_stateless_scope as _in_scope

    return bool(_in_scope())


def no_autocast():
    """A context in which reading a float variable gives its stored dtype, not the
    compute dtype of the surrounding layer's mixed-precision policy."""
    from keras.src.backend.common.variables import AutocastScope

    return AutocastScope(None)


def in_multi_replica_step() -> bool:
    """True inside the replica function of a TensorFlow distribution strategy with more
    than one replica (the replicas then run concurrently on the same objects)."""
    if backend_name() != "tensorflow":
        return False
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context is not None and context.num_replicas_in_sync > 1


def check_state_update(value, *, what: str) -> None:
    """Refuses to store a JAX tracer in a variable outside a ``keras.StatelessScope``.

    Under a user's ``jax.jit`` (or ``grad``, ``vmap``) a variable update would keep the
    tracer after the trace ends and break every later call. Keras' own ``fit`` and the
    flow's pure-function path (``MultiScaleFlow.stateless_call``) trace inside a
    ``StatelessScope``, where the update is returned as a value instead.

    Raises:
        ValueError: on JAX, for a traced ``value`` outside a stateless scope.
    """
    if backend_name() != "jax" or is_concrete(value) or in_stateless_scope():
        return
    raise ValueError(
        f"{what}: training-mode batch norm updates its moving averages, which a traced "
        "JAX function cannot do in place (the variables would keep a tracer). Inside "
        "jax.jit/jax.grad run the call through MultiScaleFlow.stateless_call (or "
        "RealNVP's Keras fit), which returns the new statistics as values; or call the "
        "flow in inference mode (training=False)."
    )


def eager_scope():
    """A context in which weights are created with concrete values, even mid-trace.

    A flow built lazily on its first call may be built inside a user's ``jax.jit`` or
    ``tf.function``; its initial weights (and the random-seed state used to draw them)
    must not become tracers or graph tensors. On JAX this is
    ``jax.ensure_compile_time_eval()``, on TensorFlow ``tf.init_scope()``.
    """
    if backend_name() == "jax":
        import jax

        return jax.ensure_compile_time_eval()
    import tensorflow as tf

    return tf.init_scope()


tfp = load_tfp()
tfb = tfp.bijectors
tfd = tfp.distributions


def _load_prefer_static():
    import importlib

    root = "tensorflow_probability.python" if backend_name() == "tensorflow" else tfp.__name__
    return importlib.import_module(root + ".internal.prefer_static")


ps = _load_prefer_static()


def stateless_normal(shape, seed, dtype="float32"):
    """Standard-normal draws fixed by an int32 ``seed`` of shape ``[2]`` (a tensor or array).

    Unlike ``keras.random.normal`` this accepts a seed *tensor*, so a compiled function
    or a served signature can take the seed as an input without retracing.
    """
    if backend_name() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_normal(shape, seed=tf.cast(seed, tf.int32), dtype=dtype)
    import jax
    import jax.numpy as jnp

    key = jax.random.wrap_key_data(jnp.asarray(seed).astype(jnp.uint32))
    return jax.random.normal(key, tuple(shape), dtype=dtype)


def stateless_uniform(shape, seed, dtype="float32"):
    """Uniform ``[0, 1)`` draws fixed by an int32 ``seed`` of shape ``[2]``."""
    if backend_name() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int32), dtype=dtype)
    import jax
    import jax.numpy as jnp

    key = jax.random.wrap_key_data(jnp.asarray(seed).astype(jnp.uint32))
    return jax.random.uniform(key, tuple(shape), dtype=dtype)
