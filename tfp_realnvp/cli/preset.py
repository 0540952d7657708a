"""A training script with its own defaults: ``python examples/<name>.py [train flags]``.

The example scripts (``examples/celeba.py``, ``cifar10.py``, ``fashion_mnist.py``) are
``python -m tfp_realnvp train`` with other defaults: every ``train`` flag is accepted and
overrides them, errors name the flags as typed, and the exit status is the command line's
(``tfp_realnvp.cli.exit_status``).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tfp_realnvp.cli import exit_status
from tfp_realnvp.cli.parser import FlagParser
from tfp_realnvp.cli.train import add_train_arguments, training_config
from tfp_realnvp.training import train


def run_preset(argv: Sequence[str], *, defaults: Mapping[str, Any], description: str) -> int:
    """Parses ``argv`` as ``train`` flags over ``defaults``, trains and returns the exit status.

    Args:
        argv: the flags, without the program name.
        defaults: ``train`` settings by their argument names (``num_scales``,
            ``output_dir``, ...); each must be a ``train`` flag's destination.
        description: the first line of the script's ``--help``.

    Returns:
        0 on success, else the command line's exit status for the failure.

    Raises:
        ValueError: if a key of ``defaults`` is no ``train`` flag (named in the message).
    """
    parser = FlagParser(description=description)
    add_train_arguments(parser)
    unknown = sorted(set(defaults) - set(parser.flags))
    if unknown:
        raise ValueError(f"defaults must name train flags; received unknown keys {unknown}.")
    parser.set_defaults(**defaults)
    args = parser.parse_args(list(argv))
    command = shlex.join(["python", sys.argv[0], *argv])
    return exit_status(lambda: train(config=training_config(args, parser=parser, command=command)), parser)
