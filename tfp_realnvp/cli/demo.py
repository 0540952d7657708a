"""``demo``: a small Real NVP on the shipped images, with samples, an interpolation
strip and a SavedModel."""

from __future__ import annotations

import argparse
import dataclasses
import os

import keras
import numpy as np

from tfp_realnvp.cli.flags import DEMO_EPOCHS, add_training_arguments
from tfp_realnvp.cli.parser import positive_int
from tfp_realnvp.cli.train import training_config
from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.visualize import save_grid
from tfp_realnvp.training import run_training

#: The demo's data and architecture: 2 scales of 16 filters, 1 residual block, on the shipped images.
DEMO_SETTINGS = {"data": "shipped", "num_scales": 2, "num_filters": 16, "num_blocks": 1, "batch_norm": True}


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``demo``'s flags: the batch size and the training flags; the data and the
    architecture are fixed (2 scales of 16 filters, 1 residual block)."""
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default: 64).")
    add_training_arguments(parser, "demo")
    parser.set_defaults(default_epochs=DEMO_EPOCHS)


def demo(args: argparse.Namespace) -> dict:
    """Trains a small Real NVP on the shipped data and writes samples, an interpolation
    strip and (TensorFlow backend) a SavedModel; returns the report of the training."""
    config = dataclasses.replace(training_config(args, parser=getattr(args, "parser", None)), **DEMO_SETTINGS)
    result = run_training(config)
    model, test_images = result.model, result.test_images
    samples = os.path.join(config.output_dir, "samples.png")
    with atomic.atomic_path(samples) as temporary:
        save_grid(model.sample(64, temperature=config.temperature, seed=config.seed), temporary)
    rows = [model.interpolate(test_images[2 * i], test_images[2 * i + 1], steps=10) for i in range(4)]
    strip = os.path.join(config.output_dir, "interpolation.png")
    with atomic.atomic_path(strip) as temporary:
        save_grid(np.concatenate(rows), temporary, columns=10)
    if keras.backend.backend() != "tensorflow":
        config.log(f"wrote {samples} and {strip} (the SavedModel needs the TensorFlow backend: not written)")
        return result.report
    from tfp_realnvp.export.saved_model import export_saved_model

    exported = export_saved_model(
        model,
        os.path.join(config.output_dir, "saved_model"),
        version=1,
        overwrite=True,
        measured_bits_per_dim=result.report["test_bits_per_dim"],
    )
    config.log(f"wrote {samples}, {strip} and the SavedModel {exported}")
    return result.report
