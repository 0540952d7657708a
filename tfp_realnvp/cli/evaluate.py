"""``evaluate``: bits/dim of a saved model on a split (and ``classify``'s accuracy)."""

from __future__ import annotations

import argparse

from tfp_realnvp.cli.flags import add_data_arguments
from tfp_realnvp.cli.parser import positive_int
from tfp_realnvp.model.files import load_realnvp
from tfp_realnvp.training.inputs import DataSource, check_source_available, load_labelled_split, load_split
from tfp_realnvp.training.report import (
    CLASSIFY_IMAGES,
    EVALUATION_BATCH_SIZE,
    classify_accuracy,
    mean_bits_per_dim,
)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``evaluate``'s flags: the model, the data flags, the split."""
    parser.add_argument("--model", required=True, help="path of a saved .keras model.")
    add_data_arguments(parser)
    parser.add_argument(
        "--split", default="test", choices=["train", "test", "all"], help="which split (default: test)."
    )
    parser.add_argument(
        "--classify-images",
        type=positive_int,
        default=CLASSIFY_IMAGES,
        help=f"class-conditional models: measure the accuracy of classify on the first N images (default: {CLASSIFY_IMAGES}).",
    )
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=1,
        metavar="K",
        help="importance samples per image: report the bound -log (1/K) sum_k p(x+u_k)/q(u_k|x) in bits/dim (q = 1 for a uniform-dequantization model), seeded per image; it tightens as K grows (default: 1).",
    )
    parser.set_defaults(batch_size=EVALUATION_BATCH_SIZE)


def _bound(model, samples: int) -> str:
    """How the printed bits/dim were bounded, when it is not the plain one-draw uniform bound."""
    if samples == 1 and model.dequantization == "uniform":
        return ""
    return f"; {model.dequantization} dequantization, {samples} importance sample{'s' if samples > 1 else ''}"


def evaluate(args) -> float:
    """Prints the mean bits/dim of a saved model on a split; for a class-conditional
    model ``-log p(x | y)`` with the true labels, and the accuracy of ``classify``."""
    check_source_available(DataSource.of(args))
    model = load_realnvp(args.model)
    if model.num_classes is None:
        images = load_split(DataSource.of(args), args.split)
        bpd = mean_bits_per_dim(model, images, batch_size=args.batch_size, samples=args.samples)
        print(f"{args.split} bits/dim: {bpd:.4f} ({len(images)} images{_bound(model, args.samples)})")
        return bpd
    images, labels = load_labelled_split(DataSource.of(args), args.split)
    if labels.max() >= model.num_classes:
        raise ValueError(
            f"--data {args.data!r} has labels up to {int(labels.max())}; the model knows {model.num_classes} classes."
        )
    bpd = mean_bits_per_dim(model, images, batch_size=args.batch_size, labels=labels, samples=args.samples)
    accuracy, count = classify_accuracy(model, images, labels, limit=args.classify_images)
    print(f"{args.split} conditional bits/dim: {bpd:.4f} ({len(images)} images{_bound(model, args.samples)})")
    print(f"{args.split} classification accuracy: {accuracy:.4f} ({count} images, {model.num_classes} classes)")
    return bpd
