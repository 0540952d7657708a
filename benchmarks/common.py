"""What the benchmark scripts share: the record of the machine, the devices and the library
versions, timestamps, command-line value types, and the training state that a JAX train
step threads through.

Importing this module imports the standard library only (``summarize.py`` runs without
Keras, and ``throughput.py``'s parent process describes the machine without starting JAX
or TensorFlow on the accelerator); the functions that need a library or the package
import it themselves (the command-line integer types use the package's argument checks).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

#: The repository root (the working directory of the benchmarks' worker processes).
REPO_ROOT = Path(__file__).resolve().parents[1]


# Time ----------------------------------------------------------------------------------
def utc_now() -> str:
    """The current UTC time in ISO 8601, to the second (``2025-01-31T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# Machine -------------------------------------------------------------------------------
def cpu_name() -> str | None:
    """The CPU model from ``/proc/cpuinfo``, else ``platform.processor()``; ``None`` if neither says."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_description() -> dict:
    """``{"model": CPU model or None, "logical_cores": os.cpu_count()}``."""
    return {"model": cpu_name(), "logical_cores": os.cpu_count()}


def machine_description() -> dict:
    """The CPU, its cores (all, and those this process may use), the memory and the OS.

    Returns:
        ``cpu`` (model, ``"unknown"`` if not found), ``cores``, ``usable_cores`` (the
        process' CPU affinity), ``memory_gib`` (physical memory, ``None`` if unknown) and
        ``platform``.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory = None
    return {
        "cpu": cpu_name() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": memory,
        "platform": platform.platform(),
    }


def device_description(backend: str) -> dict:
    """The accelerator(s) the Keras ``backend`` runs on (imports JAX or TensorFlow).

    Returns:
        ``platform`` (``"cpu"``, ``"gpu"``, ...) and ``devices`` (one string each).
    """
    if backend == "jax":
        import jax

        devices = jax.devices()
        return {
            "platform": devices[0].platform,
            "devices": [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in devices],
        }
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = []
    for gpu in gpus:
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", "")
        except Exception:  # the device details are informative only: any failure leaves them out
            name = ""
        details.append(f"{gpu.name} {name}".strip())
    return {
        "platform": "gpu" if gpus else "cpu",
        "devices": details or [d.name for d in tf.config.list_physical_devices("CPU")],
    }


# Versions ------------------------------------------------------------------------------
#: Distributions whose installed versions ``installed_versions`` reports.
DISTRIBUTIONS = (
    "keras",
    "tensorflow",
    "tensorflow-probability",
    "tfp-nightly",
    "jax",
    "jaxlib",
    "numpy",
    "tfp-realnvp",
)


def installed_versions() -> dict:
    """Installed versions of ``DISTRIBUTIONS`` (``None`` where not installed) and Python's,
    read from the package metadata without importing anything."""
    out = {}
    for name in DISTRIBUTIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def runtime_versions() -> dict:
    """``tfp_realnvp``, ``keras``, the active Keras ``backend`` and ``python`` of this
    process (imports Keras and the package)."""
    import keras

    from tfp_realnvp import __version__

    return {
        "tfp_realnvp": __version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": sys.version.split()[0],
    }


# Command line --------------------------------------------------------------------------
def _int_at_least(text: str, low: int) -> int:
    """``text`` as an integer ``>= low``, checked by ``tfp_realnvp.internal.arguments.check_int``
    (imported here, when a command line is parsed, so that importing this module stays cheap).

    Raises:
        argparse.ArgumentTypeError: with the package's message, e.g. ``value must be an
            integer >= 1; received 0.``
    """
    from tfp_realnvp.internal.arguments import check_int

    try:
        value = int(text)
    except ValueError:
        value = text
    try:
        return check_int(value, name="value", low=low)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    """``argparse`` type: an integer ``>= 1``."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """``argparse`` type: an integer ``>= 0``."""
    return _int_at_least(text, 0)


def positive_int_list(text: str) -> list[int]:
    """``argparse`` type: comma-separated integers ``>= 1``, repeats dropped, order kept."""
    values = [positive_int(v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1; received {text!r}")
    return list(dict.fromkeys(values))


# Training state ------------------------------------------------------------------------
#: The parts of the state a Keras train step takes and returns on JAX, in its order.
TRAINING_STATE_PARTS = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")


def state_variables(model) -> tuple[list, list, list, list]:
    """The variables behind each part of ``TRAINING_STATE_PARTS``, in the order the train
    step takes them: ``model.trainable_variables``, ``model.non_trainable_variables``,
    ``model.optimizer.variables`` and ``model.metrics_variables`` (the optimizer and the
    metrics must be built: after ``compile`` and a first ``train_on_batch``, say)."""
    return (
        list(model.trainable_variables),
        list(model.non_trainable_variables),
        list(model.optimizer.variables),
        list(model.metrics_variables),
    )


def training_state(model) -> tuple[list, list, list, list]:
    """The current values of ``state_variables(model)``: the ``state`` argument of the JAX
    ``model.train_step(state, data)`` and of ``model.train_function(state, iterator)``.

    These are the variables' own arrays, not copies: a train step that donates its state
    (Keras compiles ``train_function`` with ``donate_argnums=0``) invalidates them, so
    write the returned state back with ``assign_training_state`` before reading the model.
    """
    return tuple([variable.value for variable in variables] for variables in state_variables(model))


def assign_training_state(model, state) -> None:
    """Writes a state returned by a JAX train step into the model's variables (what Keras'
    own loops do when an epoch or a ``train_on_batch`` ends).

    Raises:
        ValueError: if ``state`` does not have one value per variable of each part.
    """
    parts = state_variables(model)
    if len(state) != len(parts):
        raise ValueError(f"expected a state of {len(parts)} parts {TRAINING_STATE_PARTS}; received {len(state)}.")
    for name, variables, values in zip(TRAINING_STATE_PARTS, parts, state):
        if len(values) != len(variables):
            raise ValueError(f"{name}: the model has {len(variables)} variables; the state holds {len(values)} values.")
    for variables, values in zip(parts, state):
        for variable, value in zip(variables, values):
            variable.assign(value)


def block_until_ready(tree) -> None:
    """Waits until every array in ``tree`` is computed (any Keras backend)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(tree)
    else:
        import numpy as np

        for leaf in keras.tree.flatten(tree):
            np.asarray(leaf)
