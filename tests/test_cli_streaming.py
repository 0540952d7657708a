"""``train --stream``: a CelebA-style folder trains from disk with the paper's crop, on
TensorFlow through ``tf.data`` and on JAX through ``data.FolderBatches``."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from tfp_realnvp.cli import main

# The smallest flow: one scale, one residual block of four filters, and no batch norm
# inside the conditioners (a third of a conditioner's graph ops); these tests are about
# the data, which the flow's own batch norm still re-estimates its averages from.
TINY = ["--num-scales", "1", "--num-filters", "4", "--num-blocks", "1", "--no-conditioner-batch-norm"]
TINY += ["--batch-size", "8", "--verbose", "0"]
if keras.backend.backend() == "tensorflow":
    TINY += ["--jit-compile", "false"]


@pytest.fixture(scope="module")
def celeba_folder(tmp_path_factory):
    """``img_align_celeba/*.jpg``: 24 faces-sized (178 wide, 218 high) JPEGs."""
    folder = tmp_path_factory.mktemp("celeba") / "img_align_celeba"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 255, 218)[:, None, None]
    for index in range(24):
        image = np.clip(rows + rng.normal(0, 20, (218, 178, 3)) + index, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{index + 1:06d}.jpg", quality=90)
    return folder


@pytest.mark.slow  # two streamed training runs
def test_a_celeba_folder_streams_with_the_paper_crop_and_resumes(celeba_folder, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--data", str(celeba_folder), "--stream", "--preset", "celeba", *TINY, "--output-dir", str(out)]
    assert main([*argv, "--steps", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["image_shape"] == [64, 64, 3]
    assert report["steps"] == 2 and np.isfinite(report["test_bits_per_dim"])
    # The folder's fixed split: 90% train, the rest for the report.
    assert report["test_images"] == 2
    assert (out / "model.keras").exists() and list(out.glob("samples_epoch*.png"))
    # The same command with more steps resumes the streamed run.
    assert main([*argv, "--steps", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 3 and report["resumed_from_step"] == 2 and report["image_shape"] == [64, 64, 3]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "celeba"], "--preset celeba applies to streamed sets; add --stream"),
        (["--stream", "--pad-to", "32"], "--pad-to applies to images held in memory"),
    ],
)
def test_contradictory_stream_flags_are_refused(celeba_folder, tmp_path, capsys, extra, message):
    argv = ["train", "--data", str(celeba_folder), *extra, "--steps", "1", *TINY, "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.tf_only
@pytest.mark.parametrize("kind", ["tfrecord"])  # npz: tests/test_quiet_paths.py
def test_shards_written_with_the_default_prefix_train(tmp_path, kind):
    """``write_*_shards(images, folder)`` then ``train --data folder --stream``: the
    shards (prefix ``images``) are one set, split by image into train and test."""
    from tfp_realnvp import data

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 8, 8, 3)).astype(np.uint8)
    write = data.write_tfrecord_shards if kind == "tfrecord" else data.write_npz_shards
    write(images, tmp_path / "shards", images_per_shard=16)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "shards"), "--stream", "--steps", "2", *TINY, "--output-dir", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 2 and report["image_shape"] == [8, 8, 3]
    assert 0 < report["test_images"] < 60 and np.isfinite(report["test_bits_per_dim"])
