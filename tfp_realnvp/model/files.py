"""Saving and loading ``.keras`` files of a ``RealNVP``, with one-line errors.

:func:`load_realnvp` tells a missing file, a corrupt or truncated one, a Keras file of
another model and a model whose weights hold NaN or infinities apart, naming the file
in each message. :func:`save_realnvp` refuses non-finite weights and writes atomically.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
from typing import Any

import keras
import numpy as np

from tfp_realnvp.internal import atomic

PathLike = str | os.PathLike

_CLASS_NAME = "RealNVP"


class ModelFileError(ValueError):
    """A model file that cannot be used: corrupt, of another model, or not finite."""


class NonFiniteWeightsError(ModelFileError):
    """A model whose weights hold NaN or infinite values."""


def nonfinite_weights(model: Any) -> list[tuple[str, int]]:
    """``(variable path, number of non-finite values)`` for every weight with NaN or inf.

    Looks at ``model.weights`` (trainable weights and batch-norm moving statistics).
    """
    bad = []
    for variable in model.weights:
        values = np.asarray(keras.ops.convert_to_numpy(variable))
        if values.dtype.kind in "fc":
            count = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            if count:
                bad.append((str(variable.path), count))
    return bad


def check_finite_weights(model: Any, *, name: str = "the model") -> None:
    """Raises :class:`NonFiniteWeightsError` when any weight of ``model`` is NaN or infinite.

    Args:
        model: a Keras model.
        name: how the message names the model (e.g. its file).
    """
    bad = nonfinite_weights(model)
    if bad:
        total = sum(count for _, count in bad)
        first = bad[0][0]
        raise NonFiniteWeightsError(
            f"{name} has non-finite weights: {total} NaN or infinite values in {len(bad)} of "
            f"{len(model.weights)} weights (first: {first!r}); training diverged, so it cannot be used."
        )


def _archive_class(path: pathlib.Path) -> str | None:
    """The class name in a ``.keras`` archive's ``config.json``, or a ``ModelFileError``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelFileError(
                    f"{str(path)!r} is a zip archive but not a Keras model file (it has no config.json)."
                )
            config = json.loads(archive.read("config.json"))
    except zipfile.BadZipFile as error:
        raise ModelFileError(
            f"{str(path)!r} is not a valid .keras file ({error}); it is truncated or corrupt."
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        if isinstance(error, ModelFileError):
            raise
        raise ModelFileError(f"{str(path)!r} is corrupt: cannot read its config.json ({error}).") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{str(path)!r} is corrupt: its config.json is not an object.")
    return config.get("class_name")


def load_realnvp(path: PathLike, *, compile: bool = False, require_finite: bool = True):
    """Loads a ``RealNVP`` from a ``.keras`` file, with an error that says what is wrong.

    Args:
        path: the ``.keras`` file (as written by ``model.save``).
        compile: restore the optimizer too (to continue training).
        require_finite: refuse a model with NaN or infinite weights.

    Returns:
        The ``RealNVP``.

    Raises:
        FileNotFoundError: naming ``path`` when no such file exists.
        ModelFileError: (a ``ValueError``) naming ``path`` when it is a directory, is
            not a ``.keras`` archive, is truncated or corrupt, holds another kind of
            model, or (``NonFiniteWeightsError``) has non-finite weights.
    """
    from tfp_realnvp.model.realnvp import RealNVP  # registers the class for deserialization

    file = pathlib.Path(os.fspath(path))
    if not file.exists():
        raise FileNotFoundError(f"no such model file: {str(file)!r}.")
    if file.is_dir():
        raise ModelFileError(f"{str(file)!r} is a directory, not a .keras model file.")
    class_name = _archive_class(file)
    if class_name != _CLASS_NAME:
        raise ModelFileError(f"{str(file)!r} holds a Keras model of class {class_name!r}, not a tfp_realnvp RealNVP.")
    try:
        model = keras.models.load_model(file, compile=compile)
    except Exception as error:  # Keras raises many kinds for damaged archives
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelFileError(
            f"{str(file)!r} could not be loaded as a RealNVP: {type(error).__name__}: {detail[:300]}"
        ) from None
    if not isinstance(model, RealNVP):
        raise ModelFileError(f"{str(file)!r} holds a {type(model).__name__}, not a tfp_realnvp RealNVP.")
    if require_finite:
        check_finite_weights(model, name=repr(str(file)))
    return model


def save_realnvp(model: Any, path: PathLike) -> pathlib.Path:
    """Saves ``model`` to the ``.keras`` file ``path`` atomically, refusing NaN weights.

    The file is written under a temporary name in the same directory, flushed and
    renamed over ``path``, so an existing file at ``path`` survives any failure.

    Raises:
        NonFiniteWeightsError: when a weight is NaN or infinite (nothing is written).
        ValueError: when ``path`` does not end in ``.keras``.
    """
    target = pathlib.Path(os.fspath(path))
    if target.suffix != ".keras":
        raise ValueError(f"a model file name must end in .keras; received {str(target)!r}.")
    check_finite_weights(model, name=f"the model to be saved as {str(target)!r}")
    with atomic.atomic_path(target) as temporary:
        model.save(temporary)
    return target
