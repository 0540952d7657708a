"""The command line's argument parser: it remembers its flags so errors can name them.

Library code raises ``ValueError`` with Python keywords (``overwrite=True``,
``image_size=3``); the command line reports the same message in the words its user
typed (``--overwrite``, ``--image-size 3``). :class:`FlagParser` records every long flag
it is given, through public ``argparse`` calls only, and :func:`cli_wording` rewrites a
message with them.
"""

from __future__ import annotations

import argparse
import re

from tfp_realnvp.internal.arguments import check_int, check_number


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1, else an error naming ``text``."""
    value = int(text)
    try:
        return check_int(value, name="value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}") from None


def positive_float(text: str) -> float:
    """``argparse`` type: a finite number > 0, else an error naming ``text``."""
    value = float(text)
    try:
        return check_number(value, name="value", low=0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; received {text!r}") from None


class _FlagGroup:
    """A mutually exclusive group whose flags its parser remembers too."""

    def __init__(self, group, parser: FlagParser):
        self._group = group
        self._parser = parser

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = self._group.add_argument(*args, **kwargs)
        self._parser.remember(action)
        return action


class FlagParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that keeps ``dest -> (long flag, is a switch)`` in ``flags``.

    The parsers of its subcommands (``add_subparsers().add_parser``) are
    ``FlagParser`` s too; :meth:`command` returns the one of a command name.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.flags: dict[str, tuple[str, bool]] = {}
        self._subcommands: argparse.Action | None = None

    def remember(self, action: argparse.Action) -> None:
        """Records ``action``'s first long flag (``--name``) under its ``dest``."""
        long_flags = [option for option in action.option_strings if option.startswith("--")]
        if long_flags and action.dest != "help":
            # A store_true action takes no value and stores the constant True.
            self.flags[action.dest] = (long_flags[0], action.nargs == 0 and action.const is True)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.remember(action)
        return action

    def add_mutually_exclusive_group(self, **kwargs) -> _FlagGroup:
        return _FlagGroup(super().add_mutually_exclusive_group(**kwargs), self)

    def add_subparsers(self, **kwargs) -> argparse.Action:
        self._subcommands = super().add_subparsers(**kwargs)
        return self._subcommands

    def command(self, name: str) -> FlagParser | None:
        """The parser of subcommand ``name``, or ``None``."""
        if self._subcommands is None:
            return None
        return self._subcommands.choices.get(name)


def cli_wording(message: str, parser: argparse.ArgumentParser | None) -> str:
    """``message`` with the Python keywords of ``parser``'s options written as its flags.

    ``overwrite=True`` becomes ``--overwrite``, ``image_size=3`` becomes
    ``--image-size 3``, and a bare ``image_size`` (names with an underscore only)
    becomes ``--image-size``. A parser that is not a :class:`FlagParser` leaves the
    message as it is.
    """
    flags = getattr(parser, "flags", None)
    if not flags:
        return message
    for dest in sorted(flags, key=len, reverse=True):
        flag, is_switch = flags[dest]
        if is_switch:
            message = re.sub(rf"(?<![\w-]){re.escape(dest)}=True\b", flag, message)
        message = re.sub(rf"(?<![\w-]){re.escape(dest)}=(?=\S)", f"{flag} ", message)
        if "_" in dest:
            message = re.sub(rf"(?<![\w-]){re.escape(dest)}\b", flag, message)
    return message
