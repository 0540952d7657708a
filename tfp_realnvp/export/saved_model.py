"""SavedModel export of a trained ``RealNVP`` for TensorFlow Serving.

Loading the exported directory needs only TensorFlow: neither ``tfp_realnvp`` nor
TensorFlow Probability is imported. It holds four signatures, traced in inference mode
(batch norm on its moving averages) with float32 outputs whatever the training
precision:

* ``serving_default``: ``images`` uint8 ``[N, H, W, C]`` ->
  ``log_prob`` float32 ``[N]`` (nats) and ``bits_per_dim`` float32 ``[N]``. Images are
  dequantized with the same seeded noise as :meth:`RealNVP.log_prob`, so the served
  values equal the in-process ones.
* ``sample``: ``num_samples`` int32 scalar, ``seed`` int32 ``[2]``, ``temperature``
  float32 scalar -> ``images`` uint8 ``[num_samples, H, W, C]``; the same seed gives
  the same images. ``num_samples`` may be at most ``max_samples``, a bound fixed at
  export (:data:`DEFAULT_MAX_SAMPLES` unless given), so one request cannot exhaust
  the server's memory.
* ``encode``: ``images`` uint8 ``[N, H, W, C]`` -> ``z`` float32 ``[N, H, W, C]``.
* ``decode``: ``z`` float32 ``[N, H, W, C]`` -> ``images`` uint8 ``[N, H, W, C]``.

Every signature that takes a batch refuses an empty one with an error that says so.

A class-conditional model (``RealNVP(num_classes=K)``) takes ``labels`` int32 ``[N]``
in ``[0, K)`` in every signature, one per image (``sample``: one per sample, so
``num_samples`` must equal their count), and has a fifth signature:

* ``classify``: ``images`` uint8 ``[N, H, W, C]`` -> ``probabilities`` float32 ``[N, K]``
  (``p(y | x)`` under a uniform prior, Bayes' rule computed with logsumexp),
  ``class_log_prob`` float32 ``[N, K]`` (``log p(x | y = k)``, nats) and ``labels`` int32
  ``[N]`` (the most probable class).

A label outside ``[0, K)`` or a count that differs from the images' fails with an error
that says so.

``assets/realnvp.json`` records the image shape, the flow configuration, the package,
TensorFlow and Keras versions, the export time, the bits/dim measured at export and
``max_samples``.

Exports are written aside and renamed into place; concurrent exports to one base
directory take turns (a lock on the directory), so each gets its own version or
fails with an error, and ``overwrite=True`` keeps the old export until the new one
is in place.

Example::

    path = tfp_realnvp.export_saved_model(model, "export", version="auto")
    served = tf.saved_model.load(path)
    served.signatures["serving_default"](images=tf.constant(batch, tf.uint8))
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.version import VERSION

#: Names of the exported signatures, in the order they are listed.
SIGNATURE_NAMES = ("serving_default", "sample", "encode", "decode")

#: Names of the signatures of a class-conditional model.
CONDITIONAL_SIGNATURE_NAMES = SIGNATURE_NAMES + ("classify",)

#: File name of the export metadata inside the SavedModel's ``assets/`` directory.
METADATA_FILENAME = "realnvp.json"

#: Version of the layout of ``assets/realnvp.json``.
METADATA_FORMAT_VERSION = 1

#: Largest ``num_samples`` the served ``sample`` signature accepts, unless the export
#: sets another bound.
DEFAULT_MAX_SAMPLES = 1024

_BPD_BATCH_SIZE = 256
_TRACE_ATTRIBUTE = "_saved_model_signatures"


class ExportExistsError(FileExistsError, ValueError):
    """The export directory already holds files and ``overwrite`` was not given.

    A ``FileExistsError`` that is also a ``ValueError``, so callers may catch either.
    """


# Paths ---------------------------------------------------------------------------
def _existing_versions(base: pathlib.Path) -> list[int]:
    """Integer-named subdirectories of ``base`` (TF Serving model versions)."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def _resolve_target(path: str | os.PathLike, version: int | str | None) -> pathlib.Path:
    """The directory to write: ``path``, ``path/<version>`` or ``path/<next version>``."""
    base = pathlib.Path(os.fspath(path)).expanduser()
    if version is None:
        return base
    if isinstance(version, str) and version == "auto":
        versions = _existing_versions(base)
        return base / str(versions[-1] + 1 if versions else 1)
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(
            f"version must be None, 'auto' or a non-negative integer (a TF Serving model "
            f"version); received {version!r}."
        )
    return base / str(int(version))


def _check_writable(target: pathlib.Path, overwrite: bool) -> None:
    if (target.exists() or target.is_symlink()) and (not target.is_dir() or target.is_symlink()):
        raise ExportExistsError(f"cannot export to {str(target)!r}: it exists and is not a directory.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ExportExistsError(
            f"export directory {str(target)!r} already exists and is not empty; pass "
            "overwrite=True to replace it, or export under a new version."
        )


def _lock_directory(path: str | os.PathLike, version: int | str | None) -> pathlib.Path:
    """The directory whose lock serialises exports that could collide: the base of the
    versions, or the parent of an unversioned export directory."""
    base = pathlib.Path(os.fspath(path)).expanduser()
    return base if version is not None else base.parent


def _install(staging: pathlib.Path, path, version, overwrite: bool) -> pathlib.Path:
    """Moves the finished export into place while holding the lock of its base directory.

    The target is resolved again under the lock, so ``version="auto"`` picks a
    version no other export has taken, and an explicit target that another process
    filled in the meantime is refused unless ``overwrite``.
    """
    with atomic.directory_lock(_lock_directory(path, version)):
        target = _resolve_target(path, version)
        _check_writable(target, overwrite)
        try:
            return atomic.install_directory(staging, target, replace=overwrite)
        except FileExistsError as error:
            raise ExportExistsError(
                f"cannot export to {str(target)!r}: {error} Pass overwrite=True to replace it, "
                "or export under a new version."
            ) from None
        except OSError as error:
            raise OSError(
                f"could not move the export into {str(target)!r} ({error}); what was there before is unchanged."
            ) from error


# Checks --------------------------------------------------------------------------
def _require_tensorflow_backend() -> None:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            "SavedModel export needs the TensorFlow Keras backend; the active backend is "
            f"{backend!r} (set KERAS_BACKEND=tensorflow)."
        )


def _check_model(model: Any) -> None:
    from tfp_realnvp.model.realnvp import RealNVP

    if not isinstance(model, RealNVP):
        raise TypeError(f"export_saved_model needs a tfp_realnvp.RealNVP model; received {type(model).__name__}.")


def _bpd_images(images: Any, image_shape: Sequence[int]) -> np.ndarray:
    """``images_for_bpd`` as a uint8 batch, or ``ValueError`` naming what was received."""
    from tfp_realnvp.internal.validation import as_image_batch

    arr = as_image_batch(images, image_shape=image_shape, name="images_for_bpd")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            "images_for_bpd must hold integer pixel values (the export serves uint8 images); "
            f"received dtype {arr.dtype}."
        )
    if len(arr) == 0:
        raise ValueError(f"images_for_bpd is empty; received shape {list(arr.shape)}.")
    return arr.astype(np.uint8)


def _check_max_samples(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 2**31 - 1:
        raise ValueError(f"max_samples must be a positive integer (int32); received {value!r}.")
    return int(value)


def _check_finite(model) -> None:
    from tfp_realnvp.model.files import check_finite_weights

    check_finite_weights(model, name="the model to export")


def _check_measured(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"measured_bits_per_dim must be a number; received {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"measured_bits_per_dim must be finite; received {value!r}.")
    return number


# The servable --------------------------------------------------------------------
def _trace_signatures(model, max_samples: int = DEFAULT_MAX_SAMPLES) -> dict:
    """The four signatures of ``model`` as concrete functions, traced in inference mode.

    The functions read the model's variables when they run, so one trace serves every
    later export of the same model (e.g. a new version after more training); traces
    are kept on the model, outside Keras' attribute tracking, one per ``max_samples``.

    Args:
        model: the ``RealNVP``.
        max_samples: the largest ``num_samples`` the ``sample`` signature accepts.

    Returns:
        The ``ConcreteFunction`` of each name in ``SIGNATURE_NAMES``.
    """
    max_samples = _check_max_samples(max_samples)
    cache = getattr(model, _TRACE_ATTRIBUTE, None)
    if not isinstance(cache, dict) or set(cache) & set(CONDITIONAL_SIGNATURE_NAMES):
        cache = {}
        object.__setattr__(model, _TRACE_ATTRIBUTE, cache)
    if max_samples in cache:
        return dict(cache[max_samples])
    import tensorflow as tf

    height, width, channels = (int(d) for d in model.image_shape)
    event = [height, width, channels]

    # TF Serving feeds tensors of any shape to a signature: check them in the graph so
    # that a wrong shape fails with "Shape of tensor images [1,9,8,1] is not
    # compatible with expected shape [?,8,8,1]" rather than deep inside the flow, and
    # an empty batch with a message rather than inside a convolution.
    def non_empty(tensor, signature: str, name: str):
        check = tf.debugging.assert_positive(
            tf.shape(tensor)[0],
            message=f"{signature}: {name} must hold at least one item; received an empty batch",
        )
        with tf.control_dependencies([check]):
            return tf.identity(tensor)

    def checked_images(images, signature: str):
        images = tf.ensure_shape(images, [None, *event], name="check_images_shape")
        return non_empty(images, signature, "images")

    num_classes = model.num_classes

    def checked_labels(labels, count, signature: str):
        labels = tf.ensure_shape(labels, [None], name="check_labels_shape")
        checks = [
            tf.debugging.assert_non_negative(labels, message=f"{signature}: labels must lie in [0, {num_classes})"),
            tf.debugging.assert_less(
                labels,
                tf.constant(num_classes, tf.int32),
                message=f"{signature}: labels must lie in [0, {num_classes})",
            ),
            tf.debugging.assert_equal(
                tf.shape(labels)[0], count, message=f"{signature}: labels must hold one label per image"
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    def log_prob(images, labels=None):
        images = checked_images(images, "serving_default")
        if labels is None:
            inputs = images
        else:
            inputs = (images, checked_labels(labels, tf.shape(images)[0], "serving_default"))
        log_p = tf.cast(model(inputs, training=False), tf.float32)
        bits = tf.cast(model.to_bits_per_dim(log_p), tf.float32)
        return {"log_prob": tf.identity(log_p, name="log_prob"), "bits_per_dim": tf.identity(bits, name="bits_per_dim")}

    def classify(images):
        log_lik = tf.cast(model.class_log_likelihoods_tensor(checked_images(images, "classify")), tf.float32)
        log_post = log_lik - tf.reduce_logsumexp(log_lik, axis=1, keepdims=True)
        return {
            "probabilities": tf.identity(tf.exp(log_post), name="probabilities"),
            "class_log_prob": tf.identity(log_lik, name="class_log_prob"),
            "labels": tf.identity(tf.argmax(log_lik, axis=1, output_type=tf.int32), name="labels"),
        }

    def sample(num_samples, seed, temperature, labels=None):
        num_samples = tf.ensure_shape(num_samples, [], name="check_num_samples_shape")
        seed = tf.ensure_shape(seed, [2], name="check_seed_shape")
        temperature = tf.ensure_shape(temperature, [], name="check_temperature_shape")
        checks = [
            tf.debugging.assert_positive(num_samples, message="sample: num_samples must be a positive int32 scalar"),
            tf.debugging.assert_less_equal(
                num_samples,
                tf.constant(max_samples, tf.int32),
                message=f"sample: num_samples must be at most {max_samples}, the bound fixed at export "
                "(max_samples in assets/realnvp.json); ask for fewer per request",
            ),
            tf.debugging.assert_positive(temperature, message="sample: temperature must be a positive float32 scalar"),
            tf.debugging.assert_all_finite(temperature, message="sample: temperature must be finite"),
        ]
        with tf.control_dependencies(checks):
            if labels is not None:
                labels = checked_labels(labels, num_samples, "sample")
            images = model.sample_tensor(num_samples, seed, temperature, labels)
        return {"images": tf.identity(tf.cast(images, tf.uint8), name="images")}

    def encode(images, labels=None):
        images = checked_images(images, "encode")
        if labels is not None:
            labels = checked_labels(labels, tf.shape(images)[0], "encode")
        z = tf.cast(model.encode_tensor(images, labels), tf.float32)
        return {"z": tf.identity(z, name="z")}

    def decode(z, labels=None):
        z = non_empty(tf.ensure_shape(z, [None, *event], name="check_z_shape"), "decode", "z")
        z = tf.debugging.assert_all_finite(z, message="decode: z must be finite (no NaN or Inf)")
        if labels is not None:
            labels = checked_labels(labels, tf.shape(z)[0], "decode")
        return {"images": tf.identity(tf.cast(model.decode_tensor(z, labels), tf.uint8), name="images")}

    if num_classes is None:
        # The unconditional signatures take exactly their own inputs (no labels argument).
        log_prob_fn, encode_fn, decode_fn = (
            (lambda images: log_prob(images)),
            (lambda images: encode(images)),
            (lambda z: decode(z)),
        )

        def sample_fn(num_samples, seed, temperature):
            return sample(num_samples, seed, temperature)
    else:
        log_prob_fn, encode_fn, decode_fn, sample_fn = log_prob, encode, decode, sample

    specs = {
        "serving_default": (log_prob_fn, [tf.TensorSpec([None, *event], tf.uint8, name="images")]),
        "sample": (
            sample_fn,
            [
                tf.TensorSpec([], tf.int32, name="num_samples"),
                tf.TensorSpec([2], tf.int32, name="seed"),
                tf.TensorSpec([], tf.float32, name="temperature"),
            ],
        ),
        "encode": (encode_fn, [tf.TensorSpec([None, *event], tf.uint8, name="images")]),
        "decode": (decode_fn, [tf.TensorSpec([None, *event], tf.float32, name="z")]),
    }
    names = SIGNATURE_NAMES
    if num_classes is not None:
        label_spec = tf.TensorSpec([None], tf.int32, name="labels")
        specs = {name: (fn, signature + [label_spec]) for name, (fn, signature) in specs.items()}
        specs["classify"] = (classify, [tf.TensorSpec([None, *event], tf.uint8, name="images")])
        names = CONDITIONAL_SIGNATURE_NAMES

    concrete = {}
    for name in names:
        fn, signature = specs[name]
        concrete[name] = tf.function(fn, input_signature=signature, autograph=False).get_concrete_function()
    cache[max_samples] = dict(concrete)
    return concrete


def _servable(concrete: dict, metadata_file: str):
    """A ``tf.Module`` that owns what the signatures capture, plus the metadata asset.

    Keras 3 variables are not ``tf.Variable`` objects, so ``tf.Module`` does not find
    them on a Keras model. The module keeps the ``tf.Variable`` behind every Keras
    variable the signatures read (``ConcreteFunction.variables``): exactly what the
    SavedModel must hold, restored as ``model_variables`` after loading.
    """
    import tensorflow as tf

    seen, variables = set(), []
    for function in concrete.values():
        for variable in function.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    module = tf.Module(name="realnvp")
    module.model_variables = variables
    module.metadata = tf.saved_model.Asset(metadata_file)
    return module


def _measure_bits_per_dim(log_prob_fn, images: np.ndarray, labels: np.ndarray | None = None) -> float:
    import tensorflow as tf

    total = 0.0
    for start in range(0, len(images), _BPD_BATCH_SIZE):
        batch = {"images": tf.constant(images[start : start + _BPD_BATCH_SIZE])}
        if labels is not None:
            batch["labels"] = tf.constant(labels[start : start + _BPD_BATCH_SIZE], tf.int32)
        bits = log_prob_fn(**batch)["bits_per_dim"]
        total += float(np.sum(bits.numpy(), dtype=np.float64))
    return total / len(images)


def _spec_text(spec) -> str:
    """``"uint8 [None, 8, 8, 1]"`` for a ``tf.TensorSpec`` or tensor."""
    return f"{spec.dtype.name} {spec.shape.as_list()}".replace("'", "")


def _signature_summary(concrete: dict) -> dict:
    """Inputs and outputs of each signature, as dtype and shape strings."""
    summary = {}
    for name, function in concrete.items():
        args, kwargs = function.structured_input_signature
        inputs = {spec.name: _spec_text(spec) for spec in (*args, *kwargs.values())}
        outputs = {key: _spec_text(value) for key, value in function.structured_outputs.items()}
        summary[name] = {"inputs": inputs, "outputs": outputs}
    return summary


def _metadata(
    model,
    concrete: dict,
    *,
    bits_per_dim: float | None,
    source: str | None,
    num_images: int | None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> dict:
    import tensorflow as tf

    from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED

    height, width, channels = (int(d) for d in model.image_shape)
    return {
        "format": "tfp_realnvp.RealNVP SavedModel",
        "format_version": METADATA_FORMAT_VERSION,
        "image_shape": [height, width, channels],
        "flow_config": model.flow.config,
        "dtype_policy": model.dtype_policy.name,
        "tfp_realnvp_version": VERSION,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bits_per_dim": bits_per_dim,
        "bits_per_dim_source": source,
        "bits_per_dim_num_images": num_images,
        "eval_noise_seed": list(EVAL_NOISE_SEED),
        "max_samples": int(max_samples),
        "num_classes": model.num_classes,
        "signatures": _signature_summary(concrete),
    }


# Public API ----------------------------------------------------------------------
def export_saved_model(
    model,
    path: str | os.PathLike,
    *,
    version: int | str | None = None,
    overwrite: bool = False,
    measured_bits_per_dim: float | None = None,
    images_for_bpd: Any = None,
    labels_for_bpd: Any = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> pathlib.Path:
    """Writes ``model`` as a TF SavedModel with serving signatures.

    The signatures (``serving_default``, ``sample``, ``encode``, ``decode``; see the
    module docstring) are traced with batch norm in inference mode; their float outputs
    are float32 whatever the model's dtype policy. Loading the export needs only
    TensorFlow. The SavedModel is assembled in a temporary sibling directory and moved
    into place when complete, so a server watching ``path`` never sees half an export.
    Exports that could collide (the same base directory) take turns on a lock of that
    directory: ``version="auto"`` then gives each its own version, and a second
    export to a taken directory fails instead of replacing the first. With
    ``overwrite`` the old export is renamed aside, the new one renamed in and only
    then is the old one deleted; if anything fails the old one stays.

    Args:
        model: a ``tfp_realnvp.RealNVP`` (TensorFlow backend).
        path: the export directory, or with ``version`` the model's base directory.
        version: ``None`` writes into ``path`` itself; an integer writes into
            ``path/<version>`` (the TF Serving layout); ``"auto"`` picks the largest
            existing integer version under ``path`` plus one (1 when there is none).
        overwrite: replace an existing non-empty export directory.
        measured_bits_per_dim: bits/dim measured elsewhere (e.g. on a test set) to
            record in ``assets/realnvp.json``.
        images_for_bpd: integer images ``[N, H, W, C]`` on which to measure the mean
            bits/dim with the exported ``serving_default`` function and record it.
            Give this or ``measured_bits_per_dim``, not both.
        labels_for_bpd: for a class-conditional model, the labels ``[N]`` of
            ``images_for_bpd`` (the recorded number is then ``-log p(x | y)``); ``None``
            otherwise.
        max_samples: the largest ``num_samples`` the served ``sample`` signature
            accepts (recorded in ``assets/realnvp.json``).

    Returns:
        The directory written (``path`` or ``path/<version>``).

    Raises:
        ExportExistsError: (a ``FileExistsError`` and ``ValueError``) naming the
            directory when it exists, is not empty and ``overwrite`` is false.
        ValueError: for a bad ``version``, ``measured_bits_per_dim``,
            ``images_for_bpd`` or ``max_samples``, naming the received value, or
            (``NonFiniteWeightsError``) for a model with NaN or infinite weights.
        TypeError: when ``model`` is not a ``RealNVP``.
        RuntimeError: when the Keras backend is not TensorFlow.
    """
    _require_tensorflow_backend()
    _check_model(model)
    import tensorflow as tf

    measured = _check_measured(measured_bits_per_dim)
    if measured is not None and images_for_bpd is not None:
        raise ValueError("give images_for_bpd or measured_bits_per_dim, not both.")
    max_samples = _check_max_samples(max_samples)
    bpd_images = _bpd_images(images_for_bpd, model.image_shape) if images_for_bpd is not None else None
    bpd_labels = None
    if bpd_images is not None:
        bpd_labels = model.check_labels(labels_for_bpd, len(bpd_images), name="labels_for_bpd")
    elif labels_for_bpd is not None:
        raise ValueError("labels_for_bpd goes with images_for_bpd; received labels_for_bpd without images_for_bpd.")
    target = _resolve_target(path, version)
    _check_writable(target, overwrite)  # fail early; checked again under the lock
    _check_finite(model)

    concrete = _trace_signatures(model, max_samples)
    if bpd_images is not None:
        bits = _measure_bits_per_dim(concrete["serving_default"], bpd_images, bpd_labels)
        if not math.isfinite(bits):
            raise ValueError(
                f"the exported model gives non-finite bits/dim ({bits}) on images_for_bpd; nothing was exported."
            )
        source, count = "images_for_bpd", len(bpd_images)
    elif measured is not None:
        bits, source, count = measured, "measured_bits_per_dim", None
    else:
        bits, source, count = None, None, None
    metadata = _metadata(model, concrete, bits_per_dim=bits, source=source, num_images=count, max_samples=max_samples)

    staging = atomic.staging_directory(target)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            metadata_file = pathlib.Path(scratch) / METADATA_FILENAME
            metadata_file.write_text(json.dumps(metadata, indent=2, allow_nan=False) + "\n")
            module = _servable(concrete, str(metadata_file))
            tf.saved_model.save(module, str(staging), signatures=concrete)
        return _install(staging, path, version, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def load_metadata(path: str | os.PathLike) -> dict:
    """Reads ``assets/realnvp.json`` of an export (no TensorFlow needed).

    Raises:
        FileNotFoundError: naming the file when ``path`` is not such an export.
    """
    file = pathlib.Path(os.fspath(path)) / "assets" / METADATA_FILENAME
    if not file.is_file():
        raise FileNotFoundError(f"no export metadata at {str(file)!r}; is {str(path)!r} a tfp_realnvp export?")
    return json.loads(file.read_text())
