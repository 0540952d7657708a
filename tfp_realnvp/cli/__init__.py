"""Command line: ``python -m tfp_realnvp {train,evaluate,sample,ood,export,demo}``.

``export`` writes a TF SavedModel (default) or ONNX files (``--format onnx``); it needs
the TensorFlow backend, and on another backend refuses to parse with a message that says
what to install and how to run it.

``train --conditional`` trains a class-conditional model ``p(x | y)`` on labelled data
(``tfp_realnvp.data.load_labelled_images``: the shipped set, IDX directories with label
files, ``.npz`` files with a label array, image folders with one subdirectory per class,
tfds names); its sample grids have one row per class and its report adds the accuracy
of ``classify``. ``evaluate`` of a conditional model reports ``-log p(x | y)`` in bits/dim
and the classification accuracy; ``sample --label K`` draws from one class.

``train`` checkpoints into ``<output-dir>/checkpoints`` at the end of every epoch, every
``--checkpoint-every`` seconds and on SIGINT/SIGTERM; running the same command again
resumes from the newest checkpoint. Every file it keeps is written aside and renamed
into place, and a model already in ``--output-dir`` is replaced only when resuming or
with ``--fresh``.

One module per command, each with its ``add_*_arguments`` and the function that runs
it: ``train``, ``demo``, ``evaluate``, ``sample``, ``ood``, ``export``; ``train`` and ``demo``
run :func:`tfp_realnvp.training.train`. Beside them: ``flags`` (the flags several
commands share) and ``parser`` (the parser that remembers its flags, so errors and
messages from the library name ``--image-size`` rather than ``image_size``).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

import keras

from tfp_realnvp.cli.demo import add_demo_arguments, demo
from tfp_realnvp.cli.evaluate import add_evaluate_arguments, evaluate
from tfp_realnvp.cli.export import add_export_arguments, add_unavailable_export_arguments, run_export
from tfp_realnvp.cli.ood import add_ood_arguments, run_ood
from tfp_realnvp.cli.parser import FlagParser, cli_wording
from tfp_realnvp.cli.sample import add_sample_arguments, sample
from tfp_realnvp.cli.train import add_train_arguments, run_train
from tfp_realnvp.training.checkpoints import TrainingDiverged
from tfp_realnvp.training.interrupts import Interrupted

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_USAGE",
    "add_export_arguments",
    "build_parser",
    "cli_wording",
    "exit_status",
    "main",
    "run_export",
]

#: Exit status of a run whose training diverged (NaN or infinite loss or weights).
EXIT_DIVERGED = 3
#: Exit status of a command refused for bad flags, files or data.
EXIT_USAGE = 2


def _commands() -> list[tuple[str, str, object, object]]:
    """Every command: its name, help line, the function adding its flags and the one running it."""
    commands = [
        ("train", "train a Real NVP and report test bits/dim", add_train_arguments, run_train),
        (
            "demo",
            "train a small Real NVP on the shipped Fashion-MNIST images (a few minutes on CPU)",
            add_demo_arguments,
            demo,
        ),
        ("evaluate", "bits/dim of a saved model on a data split", add_evaluate_arguments, evaluate),
        ("sample", "write a PNG grid of samples", add_sample_arguments, sample),
        (
            "ood",
            "out-of-distribution scores of a saved model: AUROC, AUPR and FPR at TPR 0.95 per method and set",
            add_ood_arguments,
            run_ood,
        ),
    ]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        commands.append(
            (
                "export",
                "export a saved model as a TF SavedModel (or ONNX files) for serving",
                add_export_arguments,
                run_export,
            )
        )
    else:  # SavedModel and ONNX export need TensorFlow: the command says so instead of being unknown.
        commands.append(
            (
                "export",
                "export a saved model for serving (needs the TensorFlow backend)",
                functools.partial(add_unavailable_export_arguments, backend=backend),
                run_export,
            )
        )
    return commands


def build_parser() -> FlagParser:
    """The parser of every command; ``main`` runs the one it parses (``args.func``)."""
    parser = FlagParser(
        prog="python -m tfp_realnvp", description="Real NVP normalizing flows: train, evaluate, sample and export."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add_arguments, run in _commands():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (0 ok, 2 refused, 3 diverged, 128 + N on signal N)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    # Errors and messages of the library name this command's flags.
    args.parser = parser.command(args.command)
    return exit_status(lambda: args.func(args), args.parser)


def exit_status(run: Callable[[], object], parser: argparse.ArgumentParser | None = None) -> int:
    """Calls ``run`` and turns what it raises into a message on stderr and an exit status.

    Args:
        run: the command.
        parser: the parser of the command's flags; messages name its flags
            (``--image-size``) instead of keywords (``image_size``).

    Returns:
        0 when ``run`` returned, :data:`EXIT_USAGE` for bad flags, files or data
        (``ValueError``, ``OSError``), :data:`EXIT_DIVERGED` when training diverged,
        128 + N when signal N stopped it.
    """
    try:
        run()
    except TrainingDiverged as error:
        checkpoint = error.checkpoint
        where = (
            f"the last good checkpoint is {checkpoint.path} (step {checkpoint.step}): lower --learning-rate and run "
            "the command again to resume from it, or pass --fresh to start over"
            if checkpoint is not None
            else "no checkpoint was written before; lower --learning-rate and run the command again"
        )
        print(f"error: {cli_wording(str(error), parser)}\n{where}. No model was saved.", file=sys.stderr)
        return EXIT_DIVERGED
    except Interrupted as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        print(f"error: {cli_wording(str(error), parser)}", file=sys.stderr)
        return EXIT_USAGE
    return 0
