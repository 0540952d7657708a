"""``export``: a saved ``.keras`` model as a TF SavedModel, or ONNX files, for serving (TensorFlow backend).

On another Keras backend the command exists but refuses to parse, saying what to install
and which backend to run it with (:func:`add_unavailable_export_arguments`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

import numpy as np

from tfp_realnvp.export import describe_export, export_saved_model, load_metadata
from tfp_realnvp.export.metadata import METADATA_PATH
from tfp_realnvp.export.signatures import DEFAULT_MAX_SAMPLES
from tfp_realnvp.export.versions import AUTO_VERSION, parse_version
from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.model.files import load_realnvp
from tfp_realnvp.model.realnvp import RealNVP

#: The formats ``--format`` takes: a TF SavedModel with every signature, or ONNX files
#: (``log_prob``, ``encode``, ``decode``; see ``tfp_realnvp.export.onnx``).
EXPORT_FORMATS = ("saved_model", "onnx")

#: The packages ``--format onnx`` needs, and how to install them.
ONNX_PACKAGES = ("tf2onnx", "onnx")
ONNX_INSTALL_HINT = "pip install 'tfp-realnvp[onnx]' (tf2onnx, onnx and onnxruntime)"

#: Images of ``--eval-data`` on which ``export`` measures bits/dim, unless ``--eval-images`` says otherwise.
DEFAULT_EVAL_IMAGES = 1000


def _export_version(text: str) -> int | str:
    """``argparse`` type of ``--version``: ``auto`` or a non-negative integer."""
    try:
        return parse_version(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _ExportFormat(argparse.Action):
    """``--format``: refuses ``onnx`` at parse time when its converter is not installed."""

    def __call__(self, parser, namespace, values, option_string=None):
        missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
        if values == "onnx" and missing:
            parser.error(f"--format onnx needs {' and '.join(missing)}, which are not installed: {ONNX_INSTALL_HINT}.")
        setattr(namespace, self.dest, values)


class _RefuseExport(argparse.Action):
    """Refuses the ``export`` command, whatever its flags, with the reason in ``message``."""

    def __init__(self, *args, message: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.message = message

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(self.message)


def add_unavailable_export_arguments(parser: argparse.ArgumentParser, *, backend: str) -> argparse.ArgumentParser:
    """Makes ``parser`` (the ``export`` command on a backend other than TensorFlow) refuse to parse.

    ``export --help`` still prints the command's description; anything else fails with
    a usage error that says what to install and which backend to use.
    """
    message = (
        f"export needs the TensorFlow Keras backend (SavedModel and ONNX files are written from TensorFlow "
        f"graphs); the active backend is {backend!r}. Install TensorFlow (pip install 'tfp-realnvp[tensorflow]'; "
        f"for --format onnx also {ONNX_INSTALL_HINT}) and run the command with KERAS_BACKEND=tensorflow: "
        "a .keras model saved on any backend loads there."
    )
    parser.description = message
    parser.add_argument(
        "arguments",
        nargs=argparse.REMAINDER,
        action=_RefuseExport,
        message=message,
        metavar="FLAGS",
        help="the export flags of the TensorFlow backend; here the command refuses them (see above).",
    )
    return parser


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the ``export`` command's flags to ``parser`` and returns it."""
    parser.add_argument(
        "--model", required=True, metavar="PATH", help="path of the trained model (.keras file written by model.save)."
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="export directory; with --version, the model's base directory holding version subdirectories.",
    )
    parser.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="saved_model",
        action=_ExportFormat,
        help="saved_model: a TF SavedModel with the serving_default (log_prob, bits_per_dim), sample, encode and "
        "decode signatures (default); onnx: log_prob.onnx, encode.onnx and decode.onnx for ONNX Runtime "
        f"(needs {ONNX_INSTALL_HINT}).",
    )
    parser.add_argument(
        "--version",
        type=_export_version,
        default=None,
        metavar=f"N|{AUTO_VERSION}",
        help=f"write into OUTPUT/<version> (TF Serving layout): an integer, or '{AUTO_VERSION}' for the "
        "largest existing version + 1 (default: write into OUTPUT itself).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty export directory (the old one is kept until the new one is in place).",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=DEFAULT_MAX_SAMPLES,
        metavar="N",
        help=f"the most images one request to the served sample signature may ask for; recorded in "
        f"{METADATA_PATH} (default: {DEFAULT_MAX_SAMPLES}; saved_model only).",
    )
    bpd = parser.add_mutually_exclusive_group()
    bpd.add_argument(
        "--bits-per-dim",
        type=float,
        default=None,
        metavar="BPD",
        help=f"bits/dim measured elsewhere, recorded in {METADATA_PATH} (saved_model only).",
    )
    bpd.add_argument(
        "--eval-data",
        default=None,
        metavar="SOURCE",
        help="measure bits/dim at export on these images ('shipped', a .npz file, an IDX or image "
        f"directory; see tfp_realnvp.data.load_images) and record it in {METADATA_PATH} (saved_model only).",
    )
    parser.add_argument(
        "--eval-split", default="test", metavar="SPLIT", help="split of --eval-data to measure on (default: test)."
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=DEFAULT_EVAL_IMAGES,
        metavar="N",
        help=f"measure on at most this many images of --eval-data (default: {DEFAULT_EVAL_IMAGES}).",
    )
    parser.add_argument(
        "--no-describe",
        action="store_true",
        help="do not print the signature listing (saved_model_cli show --all; for onnx, the files' inputs and "
        "outputs) after exporting.",
    )
    return parser


def _eval_images(args: argparse.Namespace, model: RealNVP) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The first ``--eval-images`` images of ``--eval-data`` (and their labels for a conditional model)."""
    if args.eval_data is None:
        return None, None
    count = check_int(args.eval_images, name="eval_images")
    from tfp_realnvp.data import load_images, load_labelled_images

    if model.num_classes is None:
        return load_images(args.eval_data, split=args.eval_split)[:count], None
    images, labels, _ = load_labelled_images(args.eval_data, split=args.eval_split)
    return images[:count], labels[:count]


def _run_onnx_export(args: argparse.Namespace, model: RealNVP, model_path: pathlib.Path) -> pathlib.Path:
    """``export --format onnx``: the ONNX files, then their inputs and outputs."""
    if args.bits_per_dim is not None or args.eval_data is not None:
        flag = "--bits-per-dim" if args.bits_per_dim is not None else "--eval-data"
        raise ValueError(f"{flag} is recorded in a SavedModel's metadata; it does not apply to --format onnx.")
    from tfp_realnvp.export.onnx import MANIFEST_FILENAME, export_onnx

    target = export_onnx(model, args.output, version=args.version, overwrite=args.overwrite)
    print(f"exported {model_path} to {target} (ONNX)")
    if not args.no_describe:
        files = json.loads((target / MANIFEST_FILENAME).read_text())["files"]
        for name, spec in files.items():
            inputs = ", ".join(f"{k}: {v}" for k, v in spec["inputs"].items())
            outputs = ", ".join(f"{k}: {v}" for k, v in spec["outputs"].items())
            print(f"{name}: ({inputs}) -> ({outputs})")
    return target


def run_export(args: argparse.Namespace) -> pathlib.Path:
    """Runs the ``export`` command: load ``--model``, export it, print the path and signatures.

    Args:
        args: parsed flags of :func:`add_export_arguments`.

    Returns:
        The directory written.
    """
    model_path = pathlib.Path(args.model)
    model = load_realnvp(model_path)
    if getattr(args, "format", "saved_model") == "onnx":
        return _run_onnx_export(args, model, model_path)
    images, labels = _eval_images(args, model)
    target = export_saved_model(
        model,
        args.output,
        version=args.version,
        overwrite=args.overwrite,
        measured_bits_per_dim=args.bits_per_dim,
        images_for_bpd=images,
        labels_for_bpd=labels,
        max_samples=args.max_samples,
    )
    print(f"exported {model_path} to {target}")
    bits = load_metadata(target)["bits_per_dim"]
    if bits is not None:
        print(f"bits/dim at export: {bits:.4f}")
    if not args.no_describe:
        print(describe_export(target))
    return target
