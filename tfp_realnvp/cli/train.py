"""``train``: fit a Real NVP with checkpoints, then write the model, grids and report
(:func:`tfp_realnvp.training.train` with the options of the command line)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from tfp_realnvp.cli.flags import JIT_COMPILE_FLAGS, add_data_arguments, add_model_arguments, add_training_arguments
from tfp_realnvp.cli.parser import cli_wording
from tfp_realnvp.training import TrainingConfig, train


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``train``'s flags: data, architecture, ``--conditional`` and training."""
    add_data_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="train a class-conditional model p(x | y) on the labels of --data (shipped, an IDX directory with label files, a .npz with a label array, an image folder with one subdirectory per class, or a tfds name); grids get one row per class and the report the accuracy of classify.",
    )
    add_training_arguments(parser, "train")
    parser.set_defaults(default_epochs=TrainingConfig.default_epochs)


def resume_command(args: argparse.Namespace) -> str:
    """The command that resumes the run of ``args``, as a shell would take it."""
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[1:]
    return shlex.join(["python", "-m", "tfp_realnvp", *argv])


def training_config(
    args: argparse.Namespace, *, parser: argparse.ArgumentParser | None = None, command: str | None = None
) -> TrainingConfig:
    """The :class:`TrainingConfig` of parsed training flags.

    Args:
        args: the flags of ``train`` (or ``demo``).
        parser: the parser of those flags: progress messages then name flags
            (``--fresh``) rather than keywords (``fresh=True``).
        command: the shell command that resumes the run (default: the
            ``python -m tfp_realnvp`` command of ``args``).
    """
    options = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(TrainingConfig)
        if hasattr(args, field.name)
    }
    options["batch_norm"] = not getattr(args, "no_batch_norm", False)
    options["jit_compile"] = JIT_COMPILE_FLAGS.get(options.get("jit_compile"), options.get("jit_compile", "auto"))
    options["resume_command"] = command or resume_command(args)
    options["log"] = lambda message: print(cli_wording(message, parser))
    return TrainingConfig(**options)


def run_train(args: argparse.Namespace) -> dict:
    """Runs ``train``; returns its report (see :func:`tfp_realnvp.training.train`)."""
    return train(config=training_config(args, parser=getattr(args, "parser", None)))
