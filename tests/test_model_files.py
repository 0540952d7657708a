"""Model files that are corrupt or foreign get a one-line error naming the file; CLI
errors name the command's flags, not Python keywords."""

import argparse
import zipfile

import keras
import numpy as np
import pytest

from tfp_realnvp.cli import build_parser, cli_wording, main
from tfp_realnvp.model.files import ModelFileError, load_realnvp, save_realnvp
from tfp_realnvp.model.realnvp import RealNVP


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1)
    return save_realnvp(model, tmp_path_factory.mktemp("model") / "model.keras")


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["evaluate", "sample", pytest.param("export", marks=pytest.mark.tf_only)])
def test_a_truncated_model_file_is_named_as_corrupt(model_file, tmp_path, capsys, command):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(model_file.read_bytes()[:1203])
    extra = {
        "evaluate": [],
        "sample": ["--output", str(tmp_path / "s.png")],
        "export": ["--output", str(tmp_path / "e")],
    }
    err = _one_line_error(capsys, [command, "--model", str(broken), *extra[command]])
    assert str(broken) in err and "corrupt" in err
    assert "File not found" not in err


def test_a_keras_model_of_another_class_is_refused(tmp_path, capsys):
    inputs = keras.Input((3,))
    other = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = tmp_path / "dense.keras"
    other.save(path)
    with pytest.raises(ModelFileError, match="not a tfp_realnvp RealNVP"):
        load_realnvp(path)
    err = _one_line_error(capsys, ["evaluate", "--model", str(path)])
    assert str(path) in err and "not a tfp_realnvp RealNVP" in err


def test_a_zip_that_is_not_a_model_and_a_directory_are_refused(tmp_path):
    archive = tmp_path / "other.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match="no config.json"):
        load_realnvp(archive)
    with pytest.raises(ModelFileError, match="is a directory"):
        load_realnvp(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_realnvp(tmp_path / "missing.keras")


def test_a_valid_file_loads_and_computes(model_file):
    model = load_realnvp(model_file)
    assert isinstance(model, RealNVP)
    assert np.all(np.isfinite(model.bits_per_dim(np.zeros((2, 8, 8, 1), np.uint8))))


def _command_parser(command: str):
    parser = build_parser().command(command)
    assert parser is not None, f"no {command!r} command"
    return parser


def test_cli_wording_names_flags():
    train = _command_parser("train")
    assert cli_wording("refused: image_size=3 is odd", train) == "refused: --image-size 3 is odd"
    if keras.backend.backend() == "tensorflow":  # export exists on TensorFlow only
        assert cli_wording("pass overwrite=True to replace", _command_parser("export")) == "pass --overwrite to replace"
    assert cli_wording("num_filters must be positive", train) == "--num-filters must be positive"
    # Words that are not option names stay as they are.
    assert cli_wording("the image size is odd", train) == "the image size is odd"
    # Flags of a mutually exclusive group are known too; a switch is written without a value.
    assert cli_wording("fresh=True deletes them", train) == "--fresh deletes them"
    assert cli_wording("keep_checkpoints=0", train) == "--keep-checkpoints 0"
    assert build_parser().command("no-such-command") is None
    # A parser that does not remember its flags leaves messages alone.
    assert cli_wording("image_size=3", argparse.ArgumentParser()) == "image_size=3"


def test_a_bad_image_size_is_reported_by_flag(tmp_path, capsys):
    err = _one_line_error(
        capsys,
        [
            "train",
            "--data",
            "shipped",
            "--image-size",
            "30",
            "--num-scales",
            "3",
            "--steps",
            "1",
            "--output-dir",
            str(tmp_path / "run"),
            "--verbose",
            "0",
        ],
    )
    assert "--num-scales 3" in err and "[30, 30, 1]" in err and "num_scales" not in err, err
