"""The flags that several commands share: data, model architecture, training."""

from __future__ import annotations

import argparse

from tfp_realnvp import data as data_lib
from tfp_realnvp.bijectors.recompute import RECOMPUTE_MODES
from tfp_realnvp.cli.parser import positive_float, positive_int
from tfp_realnvp.training.config import DEQUANTIZATION_CHOICES, PRECISIONS, TrainingConfig

#: ``--jit-compile`` values and the ``jit_compile`` of a training run they stand for.
JIT_COMPILE_FLAGS = {"auto": "auto", "true": True, "false": False}
#: The defaults of the options of a training run, as the ``train`` command offers them.
TRAINING_DEFAULTS = TrainingConfig()
#: The defaults of ``demo`` where they differ from ``train``'s.
DEMO_EPOCHS, DEMO_TIME_BUDGET, DEMO_LEARNING_RATE, DEMO_OUTPUT_DIR = 100, 330.0, 3e-3, "demo_output"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that say which images to read and how: ``--data``, ``--batch-size``, ``--stream``, ..."""
    parser.add_argument(
        "--data",
        default=TRAINING_DEFAULTS.data,
        help=f"'shipped' (Fashion-MNIST inside the package), a .npz file, an IDX directory, an image folder, or a tfds name such as cifar10 or celeb_a (default: {TRAINING_DEFAULTS.data}).",
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
        "--batch-size",
        type=positive_int,
        default=TRAINING_DEFAULTS.batch_size,
        help=f"images per batch (default: {TRAINING_DEFAULTS.batch_size}, as in the paper).",
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
        default=TRAINING_DEFAULTS.test_split,
        help=f"split for the final bits/dim report (default: {TRAINING_DEFAULTS.test_split}; tfds also accepts e.g. validation).",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the architecture flags of ``train``: scales, conditioner width and depth, batch norm."""
    parser.add_argument(
        "--num-scales",
        type=positive_int,
        default=TRAINING_DEFAULTS.num_scales,
        help=f"scales of the multi-scale flow (default: {TRAINING_DEFAULTS.num_scales}).",
    )
    parser.add_argument(
        "--num-filters",
        type=positive_int,
        default=TRAINING_DEFAULTS.num_filters,
        help=f"conditioner width at the first scale; doubles per scale (default: {TRAINING_DEFAULTS.num_filters}).",
    )
    parser.add_argument(
        "--num-blocks",
        type=int,
        default=TRAINING_DEFAULTS.num_blocks,
        help=f"residual blocks per conditioner (default: {TRAINING_DEFAULTS.num_blocks}).",
    )
    parser.add_argument(
        "--no-batch-norm", action="store_true", help="leave out the batch-normalization steps between couplings."
    )


def add_training_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """Adds the flags of a training command (``name`` is ``train`` or ``demo``; their defaults differ)."""
    add_step_arguments(p, name)
    add_optimization_arguments(p, name)
    add_output_arguments(p, name)


def add_step_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """Adds how long a training command trains: ``--epochs``, ``--steps``, ``--steps-per-epoch``, ``--time-budget``."""
    epochs = DEMO_EPOCHS if name == "demo" else TRAINING_DEFAULTS.default_epochs
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help=f"training epochs (default: {epochs}; the demo stops at its --time-budget first). Not together with --steps.",
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
        default=DEMO_TIME_BUDGET if name == "demo" else TRAINING_DEFAULTS.time_budget,
        help="stop training after this many seconds (checked after every batch).",
    )


def add_optimization_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """Adds the optimizer, batch-norm, memory, augmentation and precision flags of a training command."""
    p.add_argument(
        "--learning-rate",
        type=float,
        default=DEMO_LEARNING_RATE if name == "demo" else TRAINING_DEFAULTS.learning_rate,
        help=f"Adam learning rate (default: {TRAINING_DEFAULTS.learning_rate:g} as in the paper; the short demo uses "
        f"{DEMO_LEARNING_RATE:g}). A resumed run uses this value.",
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
        default=TRAINING_DEFAULTS.recompute,
        help="trade computation for memory in the train step: 'conditioner' recomputes each conditioner's activations in the backward pass, 'invertible' rebuilds every step's input from its output with the inverse (same gradients; see the README's memory table).",
    )
    p.add_argument(
        "--dequantization",
        choices=list(DEQUANTIZATION_CHOICES),
        default=TRAINING_DEFAULTS.dequantization,
        help="'uniform' adds U[0,1) noise to the pixels; 'variational' learns the noise with a small conditional flow q(u|x) trained jointly on the bound log P(x) >= E_q[log p(x+u) - log q(u|x)] (Flow++). A resumed run must use its checkpoint's value.",
    )
    p.add_argument("--flip", action="store_true", help="random horizontal flips (TensorFlow backend).")
    p.add_argument(
        "--precision", choices=list(PRECISIONS), default=TRAINING_DEFAULTS.precision, help="Keras dtype policy."
    )
    p.add_argument(
        "--jit-compile",
        choices=list(JIT_COMPILE_FLAGS),
        default="auto",
        help="XLA-compile the train step (auto: on where Keras deems it faster).",
    )


def add_output_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """Adds where a training command writes and how it starts: samples, seed, files, resume, checkpoints."""
    p.add_argument(
        "--temperature",
        type=float,
        default=TRAINING_DEFAULTS.temperature,
        help="sampling temperature of the sample grids.",
    )
    p.add_argument("--seed", type=int, default=TRAINING_DEFAULTS.seed, help="random seed (data order, noise, samples).")
    p.add_argument(
        "--output-dir",
        default=TRAINING_DEFAULTS.output_dir if name == "train" else DEMO_OUTPUT_DIR,
        help="where the model, samples, report.json and checkpoints/ go.",
    )
    p.add_argument("--tensorboard", default=None, help="TensorBoard log directory (losses and sample images).")
    p.add_argument(
        "--fit-ood",
        type=int,
        default=TRAINING_DEFAULTS.fit_ood,
        metavar="N",
        help="at the end, fit the out-of-distribution statistics (RealNVP.fit_ood) on up to N training images, so the saved model scores novel inputs (ood_scores, the SavedModel's ood_score signature); 0 = not (default).",
    )
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
        default=TRAINING_DEFAULTS.checkpoint_every,
        metavar="SECONDS",
        help=f"also checkpoint after the batch during which this many seconds have passed since the last checkpoint (default: {TRAINING_DEFAULTS.checkpoint_every:g}; checkpoints are written at every epoch end too).",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        default=TRAINING_DEFAULTS.keep_checkpoints,
        metavar="N",
        help=f"keep the newest N checkpoints in --output-dir/checkpoints (default: {TRAINING_DEFAULTS.keep_checkpoints}).",
    )
