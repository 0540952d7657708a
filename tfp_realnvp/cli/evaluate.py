"""``evaluate``: bits/dim of a saved model on a split (and ``classify``'s accuracy)."""

from __future__ import annotations

import argparse

import numpy as np

from tfp_realnvp.cli.flags import add_data_arguments
from tfp_realnvp.cli.inputs import load_labelled_split, load_split
from tfp_realnvp.cli.parser import positive_int
from tfp_realnvp.model.files import load_realnvp
from tfp_realnvp.model.realnvp import RealNVP


def mean_bits_per_dim(model: RealNVP, test: np.ndarray, batch_size: int, labels: np.ndarray | None = None) -> float:
    """Mean bits/dim of ``test`` (given ``labels``, for a class-conditional model), in inference mode."""
    return float(np.mean(model.bits_per_dim(test, labels, batch_size=batch_size)))


#: Test images on which ``train --conditional`` and ``evaluate`` measure ``classify``.
CLASSIFY_IMAGES = 2000


def classify_accuracy(
    model: RealNVP, images: np.ndarray, labels: np.ndarray, limit: int = CLASSIFY_IMAGES
) -> tuple[float, int]:
    """Share of the first ``limit`` images whose most probable class (uniform prior) is their label."""
    images, labels = images[:limit], labels[:limit]
    predicted = model.classify(images).argmax(axis=1)
    return float(np.mean(predicted == labels)), int(len(images))


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
    parser.set_defaults(batch_size=256)


def evaluate(args) -> float:
    """Prints the mean bits/dim of a saved model on a split; for a class-conditional
    model ``-log p(x | y)`` with the true labels, and the accuracy of ``classify``."""
    model = load_realnvp(args.model)
    if model.num_classes is None:
        images = load_split(args, args.split)
        bpd = mean_bits_per_dim(model, images, batch_size=args.batch_size)
        print(f"{args.split} bits/dim: {bpd:.4f} ({len(images)} images)")
        return bpd
    images, labels = load_labelled_split(args, args.split)
    if labels.max() >= model.num_classes:
        raise ValueError(
            f"--data {args.data!r} has labels up to {int(labels.max())}; the model knows {model.num_classes} classes."
        )
    bpd = mean_bits_per_dim(model, images, batch_size=args.batch_size, labels=labels)
    accuracy, count = classify_accuracy(model, images, labels, limit=args.classify_images)
    print(f"{args.split} conditional bits/dim: {bpd:.4f} ({len(images)} images)")
    print(f"{args.split} classification accuracy: {accuracy:.4f} ({count} images, {model.num_classes} classes)")
    return bpd
