"""What a ``fit``/``evaluate`` input is, decided in one place.

Keras takes many kinds of training data; the model reads some of them itself (to pair
images with labels, or to draw batches for the batch-norm re-estimation), and every
such reader asks ``classify_fit_input`` which kind it holds:

* ``ARRAYS``: images as an array or tensor (``y``, if given, the labels);
* ``PAIR``: ``x = (images, labels)``, a tuple or list of two arrays, and no ``y``;
* ``DATASET``: a ``tf.data.Dataset``;
* ``PY_DATASET``: a ``keras.utils.PyDataset``;
* ``ITERATOR``: a Python generator or iterator (which can be read only once);
* ``NONE``: no ``x`` at all.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
from collections.abc import Iterator
from typing import Any

import keras


class InputKind(enum.Enum):
    """The kinds of ``x`` that ``fit`` and ``evaluate`` accept (see the module docstring)."""

    ARRAYS = "arrays"
    PAIR = "pair"
    DATASET = "dataset"
    PY_DATASET = "py_dataset"
    ITERATOR = "iterator"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class FitInput:
    """A ``fit``/``evaluate`` input and its kind.

    Attributes:
        kind: the ``InputKind``.
        x: the ``x`` received.
        y: the ``y`` received (``None`` when absent).
    """

    kind: InputKind
    x: Any
    y: Any = None

    def describe(self) -> str:
        """The input in words, for error messages."""
        return describe(self.x)


def is_tf_dataset(x: Any) -> bool:
    """Whether ``x`` is a ``tf.data.Dataset`` (without importing TensorFlow when nothing has)."""
    tf = sys.modules.get("tensorflow")
    data = getattr(tf, "data", None)
    return data is not None and isinstance(x, data.Dataset)


def is_pair(x: Any) -> bool:
    """Whether ``x`` is a tuple or list of two items (``(images, labels)``)."""
    return isinstance(x, (tuple, list)) and len(x) == 2


def classify_fit_input(x: Any, y: Any = None) -> FitInput:
    """The kind of ``fit(x, y)``'s data (see the module docstring)."""
    if x is None:
        kind = InputKind.NONE
    elif is_tf_dataset(x):
        kind = InputKind.DATASET
    elif isinstance(x, keras.utils.PyDataset):
        kind = InputKind.PY_DATASET
    elif isinstance(x, (types.GeneratorType, Iterator)):
        kind = InputKind.ITERATOR
    elif is_pair(x) and y is None:
        kind = InputKind.PAIR
    else:
        kind = InputKind.ARRAYS
    return FitInput(kind, x, y)


def describe(x: Any) -> str:
    """``x`` in words for an error message: its type, and its length, keys or shape."""
    if x is None:
        return "None"
    if isinstance(x, dict):
        return f"a {type(x).__name__} with keys {sorted(x)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)} items"
    if hasattr(x, "shape") and not is_tf_dataset(x):
        return f"a {type(x).__name__} of shape {list(x.shape)}"
    return f"a {type(x).__name__}"
