"""The command line: train, evaluate, sample, errors and help."""

import argparse
import json

import keras
import numpy as np
import pytest

from tfp_realnvp.cli import build_parser, main

# One scale: the flow of 28x28 images traces in half the time of the default two. No
# batch norm inside the conditioners: a third fewer graph ops to trace (the CLI runs of
# tests/tiny_runs.py train with it, and tests/test_model_files.py saves and loads it).
TINY = [
    "--num-scales",
    "1",
    "--num-filters",
    "4",
    "--num-blocks",
    "1",
    "--no-conditioner-batch-norm",
    "--max-images",
    "128",
    "--batch-size",
    "32",
    "--verbose",
    "0",
]
if keras.backend.backend() == "tensorflow":
    TINY += ["--jit-compile", "false"]  # faster to build; on JAX it would run eagerly


def test_train_then_evaluate_and_sample_its_model(tmp_path, capsys):
    """One run: its files and report; ``evaluate`` and ``sample`` of the model it wrote."""
    from PIL import Image

    trained = tmp_path / "cli_run"
    # Trained with invertible recomputation: the model it produces evaluates, samples and
    # reports like any other.
    code = main(
        ["train", *TINY, "--steps", "3", "--output-dir", str(trained), "--seed", "1", "--recompute", "invertible"]
    )
    assert code == 0
    report = json.loads((trained / "report.json").read_text())
    assert report["steps"] == 3
    assert report["image_shape"] == [28, 28, 1]
    assert report["config"]["recompute"] == "invertible"
    assert np.isfinite(report["test_bits_per_dim"]) and report["test_bits_per_dim"] > 0
    assert 3.0 < report["independent_pixel_test_bits_per_dim"] < 8.0
    assert (trained / "model.keras").exists()
    assert (trained / "samples_epoch001.png").exists()

    # evaluate prints the report's test bits/dim.
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained / "model.keras"), "--max-images", "128"]) == 0
    printed = capsys.readouterr().out
    value = float(printed.split("bits/dim:")[1].split()[0])
    assert value == pytest.approx(report["test_bits_per_dim"], abs=1e-3)

    # sample writes a grid of 3x3 tiles of 28 pixels with 1-pixel padding.
    path = tmp_path / "grid.png"
    argv = ["sample", "--model", str(trained / "model.keras"), "--num-samples", "9", "--output", str(path)]
    assert main([*argv, "--scale", "1"]) == 0
    grid = np.asarray(Image.open(path))
    assert grid.shape == (3 * 29 + 1, 3 * 29 + 1)


def test_bad_data_source_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "images.npz"
    assert main(["train", *TINY, "--steps", "1", "--data", str(missing), "--output-dir", str(tmp_path)]) == 2
    assert str(missing) in capsys.readouterr().err


def subcommands(parser):
    """The subparsers of ``parser``, keyed by command name."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def squashed(text: str) -> str:
    """``text`` without whitespace: argparse wraps help lines (also inside words with hyphens)."""
    return "".join(text.split())


@pytest.mark.backend_independent
def test_help_explains_every_flag(capsys):
    parser = build_parser()
    commands = subcommands(parser)
    assert {"train", "evaluate", "sample", "demo"} <= set(commands)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    overview = squashed(capsys.readouterr().out)
    for command, sub in commands.items():
        assert squashed(command) in overview
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0
        text = squashed(capsys.readouterr().out)
        assert squashed(sub.description) in text, command
        actions = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        assert actions, command
        for action in actions:
            name = f"{command} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help != argparse.SUPPRESS, f"{name} has no help"
            for option in action.option_strings:
                assert squashed(option) in text, f"{name}: {option} missing from the help"
            # The help text itself is shown (up to any %-formatting argparse expands).
            shown = action.help.split("%")[0]
            assert squashed(shown) in text, f"{name}: its help is missing from the help page"
