"""The serving signatures of a ``RealNVP``, traced as concrete functions in inference mode.

Batch norm runs on its moving averages and every float output is float32 whatever the
training precision:

* ``serving_default``: ``images`` uint8 ``[N, H, W, C]`` -> ``log_prob`` float32 ``[N]``
  (nats) and ``bits_per_dim`` float32 ``[N]``, with the seeded dequantization noise of
  :meth:`RealNVP.log_prob`.
* ``sample``: ``num_samples`` int32 scalar, ``seed`` int32 ``[2]``, ``temperature``
  float32 scalar -> ``images`` uint8 ``[num_samples, H, W, C]``; ``num_samples`` is at
  most ``max_samples``, a bound fixed at export.
* ``encode``: ``images`` uint8 -> ``z`` float32 ``[N, H, W, C]``.
* ``decode``: ``z`` float32 -> ``images`` uint8 ``[N, H, W, C]``.
* ``log_prob_bound``: ``images`` uint8 and ``samples`` int32 scalar ``K`` -> ``log_prob``
  and ``bits_per_dim`` float32 ``[N]``: the importance-weighted bound
  ``log (1/K) sum_k p(x + u_k) / q(u_k | x)`` of :meth:`RealNVP.log_prob` with
  ``samples=K`` (``q = 1`` for uniform noise), the same seeded draws; ``K = 1`` is
  ``serving_default``. ``K`` is at most ``MAX_BOUND_SAMPLES``; the draws run
  ``BOUND_CHUNK`` at a time, so memory does not grow with ``K``.

* ``ood_score`` (models with ``fit_ood`` statistics only): ``images`` uint8 ->
  ``ood_score`` float32 ``[N]`` (the ``fisher_graph`` score, the best one computed in the
  graph; ``dose`` for statistics saved before its tests; higher = more anomalous) and one
  float32 ``[N]`` output per in-graph method the statistics allow
  (``tfp_realnvp.model.ood.GRAPH_METHODS``: ``fisher_graph``, ``dose``, ``bits_per_dim``,
  ``typicality``, ``last_scale``, ``orientation``, ``orientation_odds``,
  ``pixel_orientation_odds``, ``coarse_density``); the statistics are constants of the graph.

A class-conditional model takes ``labels`` int32 ``[N]`` in every signature, and adds
``classify``: ``images`` uint8 -> ``probabilities`` and ``class_log_prob`` float32
``[N, K]`` and ``labels`` int32 ``[N]``.

TF Serving feeds tensors of any shape and value to a signature, so each one checks its
inputs in the graph: a wrong shape fails with "Shape of tensor images [1,9,8,1] is not
compatible with expected shape [?,8,8,1]" rather than deep inside the flow, and an empty
batch, a label out of range or a bad ``num_samples`` with a message that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfp_realnvp.export.metadata import METADATA_PATH
from tfp_realnvp.internal.arguments import check_int

#: Names of the exported signatures, in the order they are listed.
SIGNATURE_NAMES = ("serving_default", "sample", "encode", "decode", "log_prob_bound")

#: Largest ``samples`` of the ``log_prob_bound`` signature (its seed keys are constants).
MAX_BOUND_SAMPLES = 4096

#: Draws per flow evaluation in ``log_prob_bound``.
BOUND_CHUNK = 16

#: Names of the signatures of a class-conditional model.
CONDITIONAL_SIGNATURE_NAMES = SIGNATURE_NAMES + ("classify",)

#: The signature added for a model with out-of-distribution statistics (``fit_ood``).
OOD_SIGNATURE_NAME = "ood_score"

#: Largest ``num_samples`` the served ``sample`` signature accepts, unless the export
#: sets another bound.
DEFAULT_MAX_SAMPLES = 1024

#: The largest ``max_samples`` there can be: ``num_samples`` is an int32.
INT32_MAX = 2**31 - 1

# The traces of a model, keyed by max_samples, kept on the model outside Keras' tracking.
_TRACE_ATTRIBUTE = "_saved_model_signatures"


def check_max_samples(value: Any) -> int:
    """``value`` as an ``int`` when it is a valid ``max_samples`` (1 to the int32 maximum).

    Raises:
        ValueError: naming ``value`` otherwise.
    """
    return check_int(value, name="max_samples", high=INT32_MAX)


class _RequestChecks:
    """In-graph checks of what a request feeds a signature, with messages that name the signature."""

    def __init__(self, event: list[int], num_classes: int | None):
        self.event = event
        self.num_classes = num_classes

    def non_empty(self, tensor, signature: str, name: str):
        """``tensor``, once its first dimension is checked to be positive."""
        import tensorflow as tf

        check = tf.debugging.assert_positive(
            tf.shape(tensor)[0],
            message=f"{signature}: {name} must hold at least one item; received an empty batch",
        )
        with tf.control_dependencies([check]):
            return tf.identity(tensor)

    def images(self, images, signature: str, name: str = "images"):
        """A non-empty batch of the model's event shape."""
        import tensorflow as tf

        images = tf.ensure_shape(images, [None, *self.event], name=f"check_{name}_shape")
        return self.non_empty(images, signature, name)

    def labels(self, labels, count, signature: str):
        """One label in ``[0, num_classes)`` for each of ``count`` items."""
        import tensorflow as tf

        labels = tf.ensure_shape(labels, [None], name="check_labels_shape")
        in_range = f"{signature}: labels must lie in [0, {self.num_classes})"
        checks = [
            tf.debugging.assert_non_negative(labels, message=in_range),
            tf.debugging.assert_less(labels, tf.constant(self.num_classes, tf.int32), message=in_range),
            tf.debugging.assert_equal(
                tf.shape(labels)[0], count, message=f"{signature}: labels must hold one label per image"
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    def bound_samples(self, samples):
        """``samples`` of its shape, once its value is checked to lie in ``[1, MAX_BOUND_SAMPLES]``."""
        import tensorflow as tf

        samples = tf.ensure_shape(samples, [], name="check_samples_shape")
        message = f"log_prob_bound: samples must be an int32 scalar in [1, {MAX_BOUND_SAMPLES}]"
        checks = [
            tf.debugging.assert_positive(samples, message=message),
            tf.debugging.assert_less_equal(samples, tf.constant(MAX_BOUND_SAMPLES, tf.int32), message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(samples)

    def sample_arguments(self, num_samples, seed, temperature, max_samples: int) -> tuple:
        """``num_samples``, ``seed``, ``temperature`` of their shapes, and the checks of their values."""
        import tensorflow as tf

        num_samples = tf.ensure_shape(num_samples, [], name="check_num_samples_shape")
        seed = tf.ensure_shape(seed, [2], name="check_seed_shape")
        temperature = tf.ensure_shape(temperature, [], name="check_temperature_shape")
        checks = [
            tf.debugging.assert_positive(num_samples, message="sample: num_samples must be a positive int32 scalar"),
            tf.debugging.assert_less_equal(
                num_samples,
                tf.constant(max_samples, tf.int32),
                message=f"sample: num_samples must be at most {max_samples}, the bound fixed at export "
                f"(max_samples in {METADATA_PATH}); ask for fewer per request",
            ),
            tf.debugging.assert_positive(temperature, message="sample: temperature must be a positive float32 scalar"),
            tf.debugging.assert_all_finite(temperature, message="sample: temperature must be finite"),
        ]
        return num_samples, seed, temperature, checks


class _Signatures:
    """The bodies of the signatures of one model; ``labels`` is ``None`` for an unconditional one."""

    def __init__(self, model: Any, max_samples: int):
        self.model = model
        self.max_samples = max_samples
        self.event = [int(d) for d in model.image_shape]
        self.checks = _RequestChecks(self.event, model.num_classes)

    def _labels(self, labels, count, signature: str):
        return None if labels is None else self.checks.labels(labels, count, signature)

    def log_prob(self, images, labels=None) -> dict:
        import tensorflow as tf

        images = self.checks.images(images, "serving_default")
        labels = self._labels(labels, tf.shape(images)[0], "serving_default")
        log_p = tf.cast(self.model(images if labels is None else (images, labels), training=False), tf.float32)
        bits = tf.cast(self.model.to_bits_per_dim(log_p), tf.float32)
        return {"log_prob": tf.identity(log_p, name="log_prob"), "bits_per_dim": tf.identity(bits, name="bits_per_dim")}

    def log_prob_bound(self, images, samples, labels=None) -> dict:
        import numpy as np
        import tensorflow as tf

        from tfp_realnvp.model.dequantization import noise_seed_keys, noise_seeds

        images = self.checks.images(images, "log_prob_bound")
        labels = self._labels(labels, tf.shape(images)[0], "log_prob_bound")
        samples = self.checks.bound_samples(samples)
        chunks = -(-MAX_BOUND_SAMPLES // BOUND_CHUNK)
        keys = noise_seed_keys(noise_seeds(chunks * BOUND_CHUNK)).reshape(chunks, BOUND_CHUNK)
        keys = tf.constant(keys.astype(np.uint32))
        draw = tf.reshape(tf.range(BOUND_CHUNK), [BOUND_CHUNK, 1])

        def body(chunk, total):
            log_w = tf.cast(self.model.log_weights_tensor(images, keys[chunk], labels), tf.float32)
            used = chunk * BOUND_CHUNK + draw < samples  # [BOUND_CHUNK, 1]: draws beyond K count zero
            log_w = tf.where(used, log_w, tf.constant(-np.inf, tf.float32))
            return chunk + 1, tf.reduce_logsumexp(tf.stack([total, tf.reduce_logsumexp(log_w, axis=0)]), axis=0)

        start = tf.fill(tf.shape(images)[:1], tf.constant(-np.inf, tf.float32))
        _, total = tf.while_loop(
            lambda chunk, total: chunk * BOUND_CHUNK < samples, body, (tf.constant(0), start), maximum_iterations=chunks
        )
        log_p = total - tf.math.log(tf.cast(samples, tf.float32))
        bits = tf.cast(self.model.to_bits_per_dim(log_p), tf.float32)
        return {"log_prob": tf.identity(log_p, name="log_prob"), "bits_per_dim": tf.identity(bits, name="bits_per_dim")}

    def classify(self, images) -> dict:
        import tensorflow as tf

        log_lik = tf.cast(self.model.class_log_likelihoods_tensor(self.checks.images(images, "classify")), tf.float32)
        log_post = log_lik - tf.reduce_logsumexp(log_lik, axis=1, keepdims=True)
        return {
            "probabilities": tf.identity(tf.exp(log_post), name="probabilities"),
            "class_log_prob": tf.identity(log_lik, name="class_log_prob"),
            "labels": tf.identity(tf.argmax(log_lik, axis=1, output_type=tf.int32), name="labels"),
        }

    def sample(self, num_samples, seed, temperature, labels=None) -> dict:
        import tensorflow as tf

        num_samples, seed, temperature, checks = self.checks.sample_arguments(
            num_samples, seed, temperature, self.max_samples
        )
        with tf.control_dependencies(checks):
            labels = self._labels(labels, num_samples, "sample")
            images = self.model.sample_tensor(num_samples, seed, temperature, labels)
        return {"images": tf.identity(tf.cast(images, tf.uint8), name="images")}

    def encode(self, images, labels=None) -> dict:
        import tensorflow as tf

        images = self.checks.images(images, "encode")
        labels = self._labels(labels, tf.shape(images)[0], "encode")
        z = tf.cast(self.model.encode_tensor(images, labels), tf.float32)
        return {"z": tf.identity(z, name="z")}

    def decode(self, z, labels=None) -> dict:
        import tensorflow as tf

        z = self.checks.images(z, "decode", name="z")
        z = tf.debugging.assert_all_finite(z, message="decode: z must be finite (no NaN or Inf)")
        labels = self._labels(labels, tf.shape(z)[0], "decode")
        return {"images": tf.identity(tf.cast(self.model.decode_tensor(z, labels), tf.uint8), name="images")}

    def ood_score(self, images, labels=None) -> dict:
        import tensorflow as tf

        images = self.checks.images(images, OOD_SIGNATURE_NAME)
        labels = self._labels(labels, tf.shape(images)[0], OOD_SIGNATURE_NAME)
        scores = self.model.ood_score_tensor(images, labels)
        return {name: tf.identity(tf.cast(value, tf.float32), name=name) for name, value in scores.items()}

    def functions(self) -> dict[str, tuple[Callable, list]]:
        """Each signature's name -> (its function, its input ``tf.TensorSpec`` list), in listing order."""
        functions = self._core_functions()
        if self.model.ood_statistics is not None:
            import tensorflow as tf

            images = tf.TensorSpec([None, *self.event], tf.uint8, name="images")
            if self.model.num_classes is not None:
                labels = tf.TensorSpec([None], tf.int32, name="labels")
                functions[OOD_SIGNATURE_NAME] = (self.ood_score, [images, labels])
            else:
                functions[OOD_SIGNATURE_NAME] = (lambda images: self.ood_score(images), [images])
        return functions

    def _core_functions(self) -> dict[str, tuple[Callable, list]]:
        import tensorflow as tf

        images = tf.TensorSpec([None, *self.event], tf.uint8, name="images")
        sample_specs = [
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([2], tf.int32, name="seed"),
            tf.TensorSpec([], tf.float32, name="temperature"),
        ]
        z = tf.TensorSpec([None, *self.event], tf.float32, name="z")
        samples = tf.TensorSpec([], tf.int32, name="samples")
        if self.model.num_classes is not None:
            labels = tf.TensorSpec([None], tf.int32, name="labels")
            return {
                "serving_default": (self.log_prob, [images, labels]),
                "sample": (self.sample, [*sample_specs, labels]),
                "encode": (self.encode, [images, labels]),
                "decode": (self.decode, [z, labels]),
                "log_prob_bound": (self.log_prob_bound, [images, samples, labels]),
                "classify": (self.classify, [images]),
            }
        # The unconditional signatures take exactly their own inputs (no labels argument).
        return {
            "serving_default": (lambda images: self.log_prob(images), [images]),
            "sample": (
                lambda num_samples, seed, temperature: self.sample(num_samples, seed, temperature),
                sample_specs,
            ),
            "encode": (lambda images: self.encode(images), [images]),
            "decode": (lambda z: self.decode(z), [z]),
            "log_prob_bound": (lambda images, samples: self.log_prob_bound(images, samples), [images, samples]),
        }


def trace_signatures(model: Any, max_samples: int = DEFAULT_MAX_SAMPLES) -> dict:
    """The signatures of ``model`` as concrete functions, traced in inference mode.

    The functions read the model's variables when they run, so one trace serves every
    later export of the same model (e.g. a new version after more training); traces
    are kept on the model, outside Keras' attribute tracking, one per ``max_samples``.

    Args:
        model: the ``RealNVP``.
        max_samples: the largest ``num_samples`` the ``sample`` signature accepts.

    Returns:
        The ``ConcreteFunction`` of each name in :data:`SIGNATURE_NAMES` (and
        :data:`CONDITIONAL_SIGNATURE_NAMES` for a class-conditional model), plus
        :data:`OOD_SIGNATURE_NAME` for a model with ``fit_ood`` statistics.

    Raises:
        ValueError: for a bad ``max_samples``, naming it.
    """
    max_samples = check_max_samples(max_samples)
    cache = getattr(model, _TRACE_ATTRIBUTE, None)
    if not isinstance(cache, dict) or set(cache) & set(CONDITIONAL_SIGNATURE_NAMES):
        cache = {}
        object.__setattr__(model, _TRACE_ATTRIBUTE, cache)
    # The OOD statistics are constants of the ood_score trace: new statistics, new traces.
    key = (max_samples, id(getattr(model, "ood_statistics", None)))
    if key in cache:
        return dict(cache[key])
    import tensorflow as tf

    concrete = {
        name: tf.function(function, input_signature=specs, autograph=False).get_concrete_function()
        for name, (function, specs) in _Signatures(model, max_samples).functions().items()
    }
    cache[key] = dict(concrete)
    return concrete
