"""``assets/realnvp.json``: what an export records about its model, written and read back.

The file records the image shape, the flow configuration, the dtype policy, the package,
TensorFlow and Keras versions, the export time, the bits/dim measured at export (with
where it came from), the evaluation noise seed, ``max_samples``, the number of classes
and each signature's inputs and outputs. Reading it back (:func:`load_metadata`) needs
neither TensorFlow nor this package's model code.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
from typing import Any

import keras

from tfp_realnvp.export.measurement import BitsPerDim
from tfp_realnvp.internal.version import VERSION

#: File name of the export metadata inside the SavedModel's assets directory.
METADATA_FILENAME = "realnvp.json"

#: The SavedModel's directory of asset files (named by TensorFlow's SavedModel layout).
ASSETS_DIRECTORY = "assets"

#: Where the metadata lies inside an export, as the messages and help texts name it.
METADATA_PATH = f"{ASSETS_DIRECTORY}/{METADATA_FILENAME}"

#: The ``format`` entry of the metadata: what kind of export this is.
METADATA_FORMAT = "tfp_realnvp.RealNVP SavedModel"

#: Version of the layout of ``assets/realnvp.json``.
METADATA_FORMAT_VERSION = 1


def _spec_text(spec: Any) -> str:
    """``"uint8 [None, 8, 8, 1]"`` for a ``tf.TensorSpec`` or tensor."""
    return f"{spec.dtype.name} {spec.shape.as_list()}".replace("'", "")


def signature_summary(concrete: dict) -> dict:
    """Inputs and outputs of each traced signature, as dtype and shape strings."""
    summary = {}
    for name, function in concrete.items():
        args, kwargs = function.structured_input_signature
        inputs = {spec.name: _spec_text(spec) for spec in (*args, *kwargs.values())}
        outputs = {key: _spec_text(value) for key, value in function.structured_outputs.items()}
        summary[name] = {"inputs": inputs, "outputs": outputs}
    return summary


def build_metadata(model: Any, concrete: dict, *, bits_per_dim: BitsPerDim, max_samples: int) -> dict:
    """The content of ``assets/realnvp.json`` for an export of ``model``.

    Args:
        model: the exported ``RealNVP``.
        concrete: the traced signatures, by name.
        bits_per_dim: the bits/dim to record.
        max_samples: the bound of the ``sample`` signature.

    Returns:
        A JSON-serialisable dict.
    """
    import tensorflow as tf

    from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED

    height, width, channels = (int(d) for d in model.image_shape)
    return {
        "format": METADATA_FORMAT,
        "format_version": METADATA_FORMAT_VERSION,
        "image_shape": [height, width, channels],
        "flow_config": model.flow.config,
        "dtype_policy": model.dtype_policy.name,
        "tfp_realnvp_version": VERSION,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bits_per_dim": bits_per_dim.value,
        "bits_per_dim_source": bits_per_dim.source,
        "bits_per_dim_num_images": bits_per_dim.num_images,
        "eval_noise_seed": list(EVAL_NOISE_SEED),
        "max_samples": int(max_samples),
        "num_classes": model.num_classes,
        "signatures": signature_summary(concrete),
    }


def write_metadata(metadata: dict, directory: str | os.PathLike) -> pathlib.Path:
    """Writes ``metadata`` as ``directory/realnvp.json`` (strict JSON: no NaN) and returns the file."""
    file = pathlib.Path(os.fspath(directory)) / METADATA_FILENAME
    file.write_text(json.dumps(metadata, indent=2, allow_nan=False) + "\n")
    return file


def load_metadata(path: str | os.PathLike) -> dict:
    """Reads ``assets/realnvp.json`` of an export (no TensorFlow needed).

    Args:
        path: the export directory.

    Returns:
        The recorded metadata.

    Raises:
        FileNotFoundError: naming the file when ``path`` is not such an export.
    """
    file = pathlib.Path(os.fspath(path)) / ASSETS_DIRECTORY / METADATA_FILENAME
    if not file.is_file():
        raise FileNotFoundError(f"no export metadata at {str(file)!r}; is {str(path)!r} a tfp_realnvp export?")
    return json.loads(file.read_text())
