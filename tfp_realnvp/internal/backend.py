"""The TensorFlow Probability namespace that matches the active Keras backend.

Keras 3 picks its backend once, from ``KERAS_BACKEND`` or ``keras.json``. TFP ships
one substrate per array library; this module imports the one that matches, so every
other module writes ``from tfp_realnvp.internal.backend import tfb, tfd`` and works on both.

* ``tensorflow`` -> ``tensorflow_probability``
* ``jax`` -> ``tensorflow_probability.substrates.jax`` (needs ``tfp-nightly`` with
  current JAX releases)

It is also the package's one module that relies on internals of TFP (its private
classes and hook, its bijector cache, ``prefer_static``) and of Keras, each named where
it is used with the version it was read from, and pinned by tests/test_backend.py.
"""

from __future__ import annotations

import types
from collections.abc import Iterator

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
# the autocasting of variable reads; the two functions below and ``tensorflow_variables``
# (at the end) are the package's only uses of Keras' internals (tests/test_layout.py keeps
# it so for its modules), pinned by constraints.txt.
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
"""TFP's ``internal.prefer_static``: ``concat``, ``stack`` and friends that return NumPy
values when their inputs are static and tensors otherwise (``Squeeze``'s event-shape
methods use it). TFP exposes it only under ``tensorflow_probability.python.internal``
(TFP 0.25; the same path in the JAX substrate of tfp-nightly 0.26.0.dev20261027)."""


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


# TFP internals -------------------------------------------------------------------------
# What follows relies on TFP's private classes, a private hook of ``tfb.Bijector`` and the
# storage of its bijector cache, read from TFP 0.25.0 (``tensorflow_probability/python/
# bijectors/{bijector,chain,invert}.py``, ``python/internal/cache_util.py``) and from the
# same files of the JAX substrate of tfp-nightly 0.26.0.dev20261027, where they are the
# same. No other module touches them (tests/test_layout.py keeps it so), and each has a
# test in tests/test_backend.py that fails when TFP changes it.


def _with_private_bases(public: type) -> tuple[type, ...]:
    """``public`` and the private base class of the same name in its MRO (``_Chain``)."""
    names = (public.__name__, "_" + public.__name__)
    return tuple(c for c in public.__mro__ if c.__name__ in names)


CHAIN_TYPES = _with_private_bases(tfb.Chain)
"""The classes of what ``tfb.Chain(...)`` returns: ``tfb.Chain``, and its private base
``_Chain``, whose instance ``Chain.__new__`` returns when a step is not a
``CompositeTensor`` (any bijector of this package: ``isinstance(tfb.Chain([Squeeze()]),
tfb.Chain)`` is false). Found by name in the MRO; the steps are ``.bijectors``, the last
applied first in ``forward``."""

INVERT_TYPES = _with_private_bases(tfb.Invert)
"""The classes of what ``tfb.Invert(b)`` returns: ``tfb.Invert``, and its private base
``_Invert`` for a ``b`` that is not a ``CompositeTensor`` (as for ``CHAIN_TYPES``); the
inverted bijector is ``.bijector``."""


class IdentityKeyedBijector(tfb.Bijector):
    """A ``tfb.Bijector`` that equals, and hashes as, only itself.

    TFP's bijector cache is shared by all instances and keyed by bijector equality, which
    ``tfb.Bijector.__eq__``/``__hash__`` compute from the private hook
    ``_get_parameterization()`` (by default the constructor arguments, ``parameters``).
    A bijector that owns its weights is not defined by its arguments: two with equal
    arguments compute different functions. Returning ``id(self)`` from the hook makes
    each instance its own cache key (as TFP does for bijectors without ``parameters``),
    and spares walking nested bijectors on every cache lookup.
    """

    def _get_parameterization(self):
        return id(self)


def cached_attributes(cache, value, kwargs: dict, *, inverse: bool) -> dict:
    """The attributes dictionary that TFP's bijector cache keeps for one call.

    For ``_forward(value, **kwargs)`` (``_inverse`` when ``inverse``). The dictionary is
    shared by the two sides of a transformation: ``forward_attributes(x)`` is
    ``inverse_attributes(y)`` once the cache holds ``y = forward(x)``, so a log-det stored
    by one call is read back by the call in the other direction.

    Args:
        cache: a bijector's ``_cache`` (a ``cache_util.BijectorCache`` bound to it).
        value: the input of the call.
        kwargs: its keyword arguments, exactly as TFP received them (part of the key).
        inverse: the call is ``_inverse`` (else ``_forward``).

    Relies on ``BijectorCache.forward_attributes``/``inverse_attributes``, the methods
    TFP's own ``FFJORD`` bijector stores its log-det with.
    """
    if inverse:
        return cache.inverse_attributes(value, **kwargs)
    return cache.forward_attributes(value, **kwargs)


class CachedCall:
    """One entry of TFP's bijector cache: the call ``owner.<name>(input(), **kwargs)``.

    ``name`` is ``"_forward"`` or ``"_inverse"``; a transformation cached both ways has
    one entry per side (the output's entry names the opposite direction).
    """

    def __init__(self, storage, key):
        self._storage, self._key = storage, key
        self.owner, _, self.name, self.kwargs = key.subkey

    def input(self):
        """The input the call was keyed by (``None`` once it was garbage-collected)."""
        return self._key()

    def forget(self) -> None:
        """Removes the entry, so the next identical call computes its result again."""
        self._key.cancel()
        self._storage.pop(self._key, None)


def cached_calls(cache) -> Iterator[CachedCall]:
    """The live entries of TFP's bijector cache, of every bijector (they share one store).

    An entry is checked for life when it is reached, so one that dies while the caller
    forgets others (its input collected) is not listed.

    Args:
        cache: any bijector's ``_cache``.

    Relies on ``BijectorCache.storage`` (a dict keyed by ``WeakStructRef``) and on each
    key's ``alive``, ``subkey`` (``(bijector, bijector class, function name, kwargs)``),
    ``__call__`` (the input) and ``cancel()`` (no removal callback once it is forgotten).
    """
    storage = cache.storage
    for key in list(storage.keys()):
        if key.alive:
            yield CachedCall(storage, key)


# Keras internals, continued ----------------------------------------------------------
def tensorflow_variables(keras_variables) -> tuple:
    """The ``tf.Variable`` stored inside each Keras variable (TensorFlow backend; ``()`` on JAX).

    The stored variable itself: ``v.value`` may be an autocast copy or, inside a
    ``StatelessScope``, a substituted value. Relies on the private ``_value`` of Keras'
    TensorFlow ``Variable`` (Keras 3.15.1, ``keras/src/backend/tensorflow/core.py``).
    """
    if backend_name() != "tensorflow":
        return ()
    import tensorflow as tf

    found = []
    for v in keras_variables:
        inner = v if isinstance(v, tf.Variable) else getattr(v, "_value", None)
        if isinstance(inner, tf.Variable):
            found.append(inner)
    return tuple(found)


def directed_metrics(metrics: list, *, direction: str, name: str) -> keras.metrics.Metric:
    """``metrics`` in one Keras metric whose members say which way is better.

    In ``mode="auto"`` Keras' monitor callbacks (``EarlyStopping``, ``ModelCheckpoint``,
    ``ReduceLROnPlateau``) decide whether a logged quantity other than the loss should
    fall or rise from the private ``_direction`` (``"up"`` or ``"down"``) of a metric of
    that name, and they look only at the members of the
    ``keras.src.trainers.compile_utils.MetricsList`` (or ``CompileMetrics``) entries of
    ``model.metrics`` (Keras 3.15.1, ``keras/src/callbacks/monitor_callback.py``,
    ``MonitorCallback._set_monitor_op``). Assigned as a model attribute, the returned
    metric is such an entry: ``model.metrics`` lists it under ``name``, its result is
    the dictionary of its members' results (so each member is logged under its own
    name), and ``reset_state`` resets them all.

    Args:
        metrics: the Keras metrics to hold; each gets ``direction``.
        direction: ``"down"`` (lower is better) or ``"up"``.
        name: the name of the holder in ``model.metrics``.

    Raises:
        ValueError: for a ``direction`` other than ``"up"`` or ``"down"``.
    """
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down'; received {direction!r}.")
    from keras.src.trainers.compile_utils import MetricsList

    class _DirectedMetrics(MetricsList):
        # MetricsList (3.15.1) defines ``get_result`` but not ``result``, which
        # ``Model.get_metrics_result`` calls.
        def result(self):
            return {m.name: m.result() for m in self.metrics}

    for metric in metrics:
        metric._direction = direction
    return _DirectedMetrics(list(metrics), name=name)


def set_tensorboard_summary_module(callback: keras.callbacks.TensorBoard, module) -> bool:
    """Makes ``callback`` write through ``module`` in place of ``tensorflow.summary``.

    ``keras.callbacks.TensorBoard`` (Keras 3.15.1, ``keras/src/callbacks/tensorboard.py``)
    reads the summary functions from its ``summary`` property, which imports
    ``tensorflow.summary`` into the private ``_summary_module`` on first use unless that
    attribute is already set. Setting it before ``fit`` hands the callback to ``module``.

    Args:
        callback: a ``keras.callbacks.TensorBoard``.
        module: an object with the ``tf.summary`` functions the callback calls.

    Returns:
        ``True`` if set; ``False`` if the callback had already chosen its module.

    Raises:
        ValueError: for anything but a ``keras.callbacks.TensorBoard``, or one of a Keras
            release without the attribute (named in the message).
    """
    if not isinstance(callback, keras.callbacks.TensorBoard):
        raise ValueError(f"callback must be a keras.callbacks.TensorBoard; received {type(callback).__name__}.")
    if not hasattr(callback, "_summary_module"):
        raise ValueError(
            f"keras {keras.__version__}: keras.callbacks.TensorBoard has no _summary_module; "
            "its summary functions cannot be replaced."
        )
    if callback._summary_module is not None:
        return False
    callback._summary_module = module
    return True
