"""Tests for tfp_realnvp.data.file_batches: image folders as NumPy batches without tf.data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tfp_realnvp import data


@pytest.fixture
def faces(tmp_path):
    """12 RGB JPEGs of CelebA's size (218 high, 178 wide), image ``i`` brighter by ``i``."""
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    rows = np.linspace(0, 150, 218)[:, None, None]
    cols = np.linspace(0, 50, 178)[None, :, None]  # left-right asymmetric, so flips show
    for i in range(12):
        image = np.clip(rows + cols + np.zeros((218, 178, 3)) + 4 * i, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i + 1:06d}.jpg", quality=95)
    return folder


def test_presets_give_the_papers_shapes(faces):
    files = data.list_image_files(faces)
    assert data.decode_image_file(files[0], preset="celeba").shape == (64, 64, 3)
    assert data.decode_image_file(files[0], preset="lsun").shape == (64, 64, 3)
    assert data.decode_image_file(files[0], image_size=32, channels=1).shape == (32, 32, 1)
    assert data.decode_image_file(files[0]).shape == (218, 178, 3)
    small = faces / "small.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(small)
    with pytest.raises(ValueError, match=r"crops 148x148.*small.png.*100x100"):
        data.decode_image_file(small, preset="celeba")


def test_one_pass_visits_every_file_once_in_full_batches_then_a_remainder(faces):
    batches = list(data.FolderBatches(data.list_image_files(faces), batch_size=5, preset="celeba", shuffle=False))
    assert [len(b) for b in batches] == [5, 5, 2]
    brightness = np.concatenate(batches)[:, 32, 32, 0].astype(int)
    assert np.all(np.diff(brightness) > 0)  # sorted order: image i is brighter than i - 1


def test_shares_of_processes_are_disjoint_and_cover_the_folder(faces):
    files = data.list_image_files(faces)
    seen = []
    for index in range(3):
        stream = data.FolderBatches(files, batch_size=2, preset="celeba", seed=index, num_shards=3, shard_index=index)
        seen.append(sorted(int(v) for v in np.concatenate(list(stream))[:, 32, 32, 0]))
    assert all(len(share) == 4 for share in seen)
    assert sorted(sum(seen, [])) == sorted(
        int(v) for v in np.concatenate(list(data.FolderBatches(files, batch_size=12, preset="celeba")))[:, 32, 32, 0]
    )
    with pytest.raises(ValueError, match="share 1 is empty"):
        data.FolderBatches(files[:1], batch_size=1, num_shards=2, shard_index=1)


def test_repeated_stream_is_endless_full_and_reshuffled(faces):
    stream = iter(data.FolderBatches(data.list_image_files(faces), batch_size=5, preset="celeba", repeat=True, seed=1))
    batches = [next(stream) for _ in range(6)]  # 2 full batches per pass
    assert all(len(b) == 5 for b in batches)
    first, second = (np.concatenate(batches[i : i + 2])[:, 32, 32, 0] for i in (0, 2))
    assert not np.array_equal(first, second)


def test_flips_are_seeded(faces):
    files = data.list_image_files(faces)
    a = np.concatenate(
        list(data.FolderBatches(files, batch_size=4, image_size=(40, 20), flip=True, seed=3, shuffle=False))
    )
    b = np.concatenate(
        list(data.FolderBatches(files, batch_size=4, image_size=(40, 20), flip=True, seed=3, shuffle=False))
    )
    plain = np.concatenate(list(data.FolderBatches(files, batch_size=4, image_size=(40, 20), shuffle=False)))
    np.testing.assert_array_equal(a, b)
    flipped = [not np.array_equal(x, y) for x, y in zip(a, plain)]
    assert 0 < sum(flipped) < len(files)


def test_bad_options_name_the_value(faces):
    files = data.list_image_files(faces)
    with pytest.raises(ValueError, match="batch_size"):
        data.FolderBatches(files, batch_size=0)
    with pytest.raises(ValueError, match="preset"):
        data.FolderBatches(files, batch_size=2, preset="imagenet")
    # An endless stream of a share smaller than one batch would never yield.
    with pytest.raises(ValueError, match=r"share 0 holds 12 file\(s\), fewer than batch_size=13"):
        data.FolderBatches(files, batch_size=13, repeat=True)
    assert len(next(iter(data.FolderBatches(files, batch_size=13)))) == 12  # one pass: a smaller last batch


@pytest.mark.tf_only
def test_the_celeba_preset_agrees_with_the_tf_data_reader(faces):
    tf_images = np.concatenate(list(data.stream_image_folder(faces, preset="celeba", batch_size=12, shuffle=False)))
    np_images = np.concatenate(
        list(data.FolderBatches(data.list_image_files(faces), batch_size=12, preset="celeba", shuffle=False))
    )
    assert tf_images.shape == np_images.shape == (12, 64, 64, 3)
    assert np.max(np.abs(tf_images.astype(int) - np_images.astype(int))) <= 8
    assert np.mean(np.abs(tf_images.astype(int) - np_images.astype(int))) < 1.5
