"""``sample``: a PNG grid of samples from a saved model."""

from __future__ import annotations

import argparse

from tfp_realnvp.cli.parser import positive_int
from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.visualize import save_grid
from tfp_realnvp.model.files import load_realnvp
from tfp_realnvp.training.report import class_grid_labels


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``sample``'s flags: the model, how many samples, temperature, seed, label, output."""
    parser.add_argument("--model", required=True, help="path of a saved .keras model.")
    parser.add_argument("--num-samples", type=positive_int, default=64, help="number of images (default: 64).")
    parser.add_argument("--temperature", type=float, default=0.7, help="latent standard deviation (default: 0.7).")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0).")
    parser.add_argument("--scale", type=positive_int, default=2, help="enlarge the grid this many times (default: 2).")
    parser.add_argument("--output", default="samples.png", help="PNG path (default: samples.png).")
    parser.add_argument(
        "--label",
        type=int,
        default=None,
        help="class-conditional models: draw every sample from this class (default: one row per class).",
    )


def sample(args) -> str:
    """Writes a PNG grid of samples from a saved model."""
    model = load_realnvp(args.model)
    columns = None
    if model.num_classes is None:
        if args.label is not None:
            raise ValueError(
                f"--label {args.label}: {args.model} is an unconditional model (trained without --conditional)."
            )
        labels, count = None, args.num_samples
    elif args.label is not None:
        if not 0 <= args.label < model.num_classes:
            raise ValueError(f"--label must lie in [0, {model.num_classes}); received --label {args.label}.")
        labels, count = args.label, args.num_samples
    else:  # one row per class
        columns = max(1, args.num_samples // model.num_classes)
        labels = class_grid_labels(model.num_classes, columns)
        count = len(labels)
    images = model.sample(count, labels=labels, temperature=args.temperature, seed=args.seed)
    with atomic.atomic_path(args.output) as temporary:
        save_grid(images, temporary, columns=columns, scale=args.scale)
    rows = f", one row of {columns} per class" if columns else ""
    print(f"wrote {count} samples to {args.output}{rows}")
    return str(args.output)
