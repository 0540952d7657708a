"""``export``: a saved ``.keras`` model as a TF SavedModel for serving (TensorFlow backend)."""

from __future__ import annotations

import argparse
import pathlib

from tfp_realnvp.model.files import load_realnvp


def _export_version(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected 'auto' or a non-negative integer; received {text!r}")
    return int(text)


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the ``export`` command's flags to ``parser`` and returns it."""
    from tfp_realnvp.export.saved_model import DEFAULT_MAX_SAMPLES

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
        "--version",
        type=_export_version,
        default=None,
        metavar="N|auto",
        help="write into OUTPUT/<version> (TF Serving layout): an integer, or 'auto' for the "
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
        f"assets/realnvp.json (default: {DEFAULT_MAX_SAMPLES}).",
    )
    bpd = parser.add_mutually_exclusive_group()
    bpd.add_argument(
        "--bits-per-dim",
        type=float,
        default=None,
        metavar="BPD",
        help="bits/dim measured elsewhere, recorded in assets/realnvp.json.",
    )
    bpd.add_argument(
        "--eval-data",
        default=None,
        metavar="SOURCE",
        help="measure bits/dim at export on these images ('shipped', a .npz file, an IDX or image "
        "directory; see tfp_realnvp.data.load_images) and record it in assets/realnvp.json.",
    )
    parser.add_argument(
        "--eval-split", default="test", metavar="SPLIT", help="split of --eval-data to measure on (default: test)."
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=1000,
        metavar="N",
        help="measure on at most this many images of --eval-data (default: 1000).",
    )
    parser.add_argument(
        "--no-describe",
        action="store_true",
        help="do not print the signature listing (saved_model_cli show --all) after exporting.",
    )
    return parser


def run_export(args: argparse.Namespace) -> pathlib.Path:
    """Runs the ``export`` command: load ``--model``, export it, print the path and signatures.

    Args:
        args: parsed flags of :func:`add_export_arguments`.

    Returns:
        The directory written.
    """
    from tfp_realnvp.export.describe import describe_export
    from tfp_realnvp.export.saved_model import export_saved_model, load_metadata

    model_path = pathlib.Path(args.model)
    model = load_realnvp(model_path)
    images = labels = None
    if args.eval_data is not None:
        from tfp_realnvp.data import load_images

        if args.eval_images < 1:
            raise ValueError(f"--eval-images must be >= 1; received {args.eval_images}.")
        if model.num_classes is None:
            images = load_images(args.eval_data, split=args.eval_split)[: args.eval_images]
        else:
            from tfp_realnvp.data import load_labelled_images

            images, labels, _ = load_labelled_images(args.eval_data, split=args.eval_split)
            images, labels = images[: args.eval_images], labels[: args.eval_images]
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
