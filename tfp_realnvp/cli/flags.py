"""The flags that several commands share: data, model architecture, training."""

from __future__ import annotations

import argparse

from tfp_realnvp import data as data_lib
from tfp_realnvp.bijectors.recompute import RECOMPUTE_MODES
from tfp_realnvp.cli.parser import positive_float, positive_int


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that say which images to read and how: ``--data``, ``--batch-size``, ``--stream``, ..."""
    parser.add_argument(
        "--data",
        default="shipped",
        help="'shipped' (Fashion-MNIST inside the package), a .npz file, an IDX directory, an image folder, or a tfds name such as cifar10 or celeb_a (default: shipped).",
    )
    parser.add_argument(
        "--pad-to",
        type=positive_int,
        default=None,
        help="zero-pad images to this side (e.g. 32 for 28x28 data with 3 scales).",
    )
    parser.add_argument(
        "--image-size", type=positive_int, default=None, help="center-crop and resize local images to this side."
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per batch (default: 64, as in the paper)."
    )
    parser.add_argument("--data-dir", default=None, help="tfds data directory (tfds names only).")
    parser.add_argument(
        "--max-images",
        type=positive_int,
        default=None,
        help="use at most N images of each split held in memory (tfds sources: N images of the evaluation split; default 10000 there).",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream --data from disk through tf.data instead of loading it into memory (an image folder, searched recursively, or a folder of TFRecord / .npz shards; TensorFlow backend). Memory stays flat as the set grows; the final report uses the first --max-images test images (default 10000).",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(data_lib.PRESETS),
        default=None,
        help="the paper's preprocessing of a streamed set: celeba (148x148 center crop, resized to 64x64) or lsun (smaller side to 96, 64x64 center crop). Needs --stream.",
    )
    parser.add_argument(
        "--test-split",
        default="test",
        help="split for the final bits/dim report (default: test; tfds also accepts e.g. validation).",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the architecture flags of ``train``: scales, conditioner width and depth, batch norm."""
    parser.add_argument(
        "--num-scales", type=positive_int, default=2, help="scales of the multi-scale flow (default: 2)."
    )
    parser.add_argument(
        "--num-filters",
        type=positive_int,
        default=64,
        help="conditioner width at the first scale; doubles per scale (default: 64).",
    )
    parser.add_argument("--num-blocks", type=int, default=8, help="residual blocks per conditioner (default: 8).")
    parser.add_argument(
        "--no-batch-norm", action="store_true", help="leave out the batch-normalization steps between couplings."
    )


def add_training_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """Adds the flags of a training command (``name`` is ``train`` or ``demo``; their defaults differ)."""
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help=f"training epochs (default: {100 if name == 'demo' else 10}; the demo stops at its --time-budget first). Not together with --steps.",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="total training steps of the run, exactly (instead of --epochs; the data repeats as needed).",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=positive_int,
        default=None,
        help="batches per epoch (default: one pass over the data); the data repeats as needed.",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=330.0 if name == "demo" else None,
        help="stop training after this many seconds (checked after every batch).",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=3e-3 if name == "demo" else 1e-3,
        help="Adam learning rate (default: 1e-3 as in the paper; the short demo uses 3e-3). A resumed run uses this value.",
    )
    p.add_argument(
        "--batch-norm-momentum",
        type=float,
        default=None,
        help="decay of the batch-norm moving averages (default: the model's, 0.9; fit re-estimates them at every epoch end).",
    )
    p.add_argument(
        "--conditioner-batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch normalization after every convolution of the conditioner networks (default: the model's; see the README).",
    )
    p.add_argument(
        "--recompute",
        choices=list(RECOMPUTE_MODES),
        default="none",
        help="trade computation for memory in the train step: 'conditioner' recomputes each conditioner's activations in the backward pass, 'invertible' rebuilds every step's input from its output with the inverse (same gradients; see the README's memory table).",
    )
    p.add_argument("--flip", action="store_true", help="random horizontal flips (TensorFlow backend).")
    p.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        default="float32",
        help="Keras dtype policy.",
    )
    p.add_argument(
        "--jit-compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="XLA-compile the train step (auto: on where Keras deems it faster).",
    )
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of the sample grids.")
    p.add_argument("--seed", type=int, default=0, help="random seed (data order, noise, samples).")
    p.add_argument(
        "--output-dir",
        default="realnvp_output" if name == "train" else "demo_output",
        help="where the model, samples, report.json and checkpoints/ go.",
    )
    p.add_argument("--tensorboard", default=None, help="TensorBoard log directory (losses and sample images).")
    p.add_argument(
        "--verbose",
        type=int,
        default=None,
        choices=[0, 1, 2],
        help="Keras progress output: 1 = progress bar with bits/dim, 2 = one line per epoch (default: 1 on a terminal, else 2).",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        action="store_true",
        help="resume from the newest checkpoint in --output-dir and fail if there is none (without this flag a checkpoint is resumed when present).",
    )
    start.add_argument(
        "--fresh",
        action="store_true",
        help="start from scratch: delete the checkpoints in --output-dir and replace its model and report when done.",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_float,
        default=600.0,
        metavar="SECONDS",
        help="also checkpoint after the batch during which this many seconds have passed since the last checkpoint (default: 600; checkpoints are written at every epoch end too).",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        default=3,
        metavar="N",
        help="keep the newest N checkpoints in --output-dir/checkpoints (default: 3).",
    )
