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
  export (:data:`~tfp_realnvp.export.signatures.DEFAULT_MAX_SAMPLES` unless given), so
  one request cannot exhaust the server's memory.
* ``encode``: ``images`` uint8 ``[N, H, W, C]`` -> ``z`` float32 ``[N, H, W, C]``.
* ``decode``: ``z`` float32 ``[N, H, W, C]`` -> ``images`` uint8 ``[N, H, W, C]``.

A model with out-of-distribution statistics (``RealNVP.fit_ood``) adds ``ood_score``:
``images`` uint8 -> ``ood_score`` float32 ``[N]`` (higher = more anomalous; the
``fisher_graph`` score) and the other scores computed in the graph
(``tfp_realnvp.model.ood.GRAPH_METHODS``), equal to :meth:`RealNVP.ood_scores` with those methods.

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

``assets/realnvp.json`` (:mod:`~tfp_realnvp.export.metadata`) records the image shape,
the flow configuration, the package, TensorFlow and Keras versions, the export time, the
bits/dim measured at export and ``max_samples``.

Exports are written aside and renamed into place; concurrent exports to one base
directory take turns (a lock on the directory), so each gets its own version or
fails with an error, and ``overwrite=True`` keeps the old export until the new one
is in place (:mod:`~tfp_realnvp.export.versions`).

Example::

    path = tfp_realnvp.export_saved_model(model, "export", version="auto")
    served = tf.saved_model.load(path)
    served.signatures["serving_default"](images=tf.constant(batch, tf.uint8))
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Any

import keras

from tfp_realnvp.export.measurement import check_bpd_request, record_bits_per_dim
from tfp_realnvp.export.metadata import build_metadata, write_metadata
from tfp_realnvp.export.signatures import DEFAULT_MAX_SAMPLES, check_max_samples, trace_signatures
from tfp_realnvp.export.versions import check_writable, install_export, resolve_target
from tfp_realnvp.internal import atomic


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


def _check_finite(model: Any) -> None:
    from tfp_realnvp.model.files import check_finite_weights

    check_finite_weights(model, name="the model to export")


def _servable(concrete: dict, metadata_file: pathlib.Path):
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
    module.metadata = tf.saved_model.Asset(str(metadata_file))
    return module


def _save(concrete: dict, metadata: dict, directory: pathlib.Path) -> None:
    """Writes the SavedModel of the traced signatures, with ``metadata`` as its asset, into ``directory``."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        module = _servable(concrete, write_metadata(metadata, scratch))
        tf.saved_model.save(module, str(directory), signatures=concrete)


def export_saved_model(
    model: Any,
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

    The signatures (``serving_default``, ``sample``, ``encode``, ``decode``, and
    ``ood_score`` after ``fit_ood``; see the module docstring) are traced with batch norm in inference mode; their float outputs
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
    request = check_bpd_request(
        model, measured_bits_per_dim=measured_bits_per_dim, images_for_bpd=images_for_bpd, labels_for_bpd=labels_for_bpd
    )
    max_samples = check_max_samples(max_samples)
    target = resolve_target(path, version)
    check_writable(target, overwrite)  # fail early; checked again under the lock
    _check_finite(model)

    concrete = trace_signatures(model, max_samples)
    bits = record_bits_per_dim(request, concrete["serving_default"])
    metadata = build_metadata(model, concrete, bits_per_dim=bits, max_samples=max_samples)
    staging = atomic.staging_directory(target)
    try:
        _save(concrete, metadata, staging)
        return install_export(staging, path, version, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
