"""Tests for tfp_realnvp.data.local: IDX files and directories, .npz files, image folders."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tfp_realnvp import data

# -------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_idx_round_trip(tmp_path, write_idx, compress, dtype):
    array = (np.arange(2 * 3 * 4) * 3 % 251).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), array, compress=compress)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.gz"):
        data.read_idx(tmp_path / "missing.gz")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01abcd")
    with pytest.raises(ValueError, match="bad.idx"):
        data.read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match=r"short.idx.*3 data bytes"):
        data.read_idx(short)


def test_idx_directory_splits_and_dispatch(tmp_path, stripes, write_idx):
    train = stripes(5)
    test = stripes(3) + 1
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train[..., 0])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test[..., 0], compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(3, dtype=np.uint8))
    images, labels = data.load_idx_dir(tmp_path, split="train")
    np.testing.assert_array_equal(images, train)
    np.testing.assert_array_equal(labels, np.arange(5))
    images, labels = data.load_idx_dir(tmp_path, split="test")
    np.testing.assert_array_equal(images, test)
    assert data.load_idx_dir(tmp_path, split="all")[0].shape == (8, 6, 5, 1)
    # load_images recognises the directory and keeps its own splits.
    np.testing.assert_array_equal(data.load_images(tmp_path, split="test"), test)
    assert data.load_images(str(tmp_path), split="train", pad_to=8).shape == (5, 8, 8, 1)


def test_idx_directory_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_idx_dir(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_idx_dir(tmp_path / "nowhere")


def test_idx_labels_must_match_images(tmp_path, stripes, write_idx):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", stripes(4)[..., 0])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(3, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train-labels.*\[3\] for 4 images"):
        data.load_idx_dir(tmp_path, split="train")


# -------------------------------------------------------------------------------- npz


def test_npz_keys(tmp_path, stripes):
    images = stripes(10)
    path = tmp_path / "one.npz"
    np.savez(path, images[..., 0])  # rank 3 -> gets a channel axis
    np.testing.assert_array_equal(data.load_npz(path), images)
    many = tmp_path / "many.npz"
    np.savez(many, images=images.astype(np.float32), labels=np.arange(10))
    out = data.load_npz(many)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)
    with pytest.raises(ValueError, match=r"'nope'.*\['images', 'labels'\]"):
        data.load_npz(many, key="nope")
    ambiguous = tmp_path / "ambiguous.npz"
    np.savez(ambiguous, a=images, b=images)
    with pytest.raises(ValueError, match=r"ambiguous.npz.*\['a', 'b'\]"):
        data.load_npz(ambiguous)
    np.testing.assert_array_equal(data.load_npz(ambiguous, key="b"), images)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        data.load_npz(tmp_path / "absent.npz")


# ----------------------------------------------------------------------- image folder


def test_image_folder_png_and_jpeg(tmp_path, write_image):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 12, 16, 3), dtype=np.uint8)
    for i, image in enumerate(rgb):
        write_image(tmp_path / f"img{i}.png", image)
    write_image(tmp_path / "more" / "x.JPG", np.full((12, 16, 3), 200, np.uint8), quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load_image_folder(tmp_path)
    assert images.shape == (4, 12, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:3], rgb)  # PNG is lossless, files sorted by path
    assert abs(int(images[3].mean()) - 200) <= 2  # JPEG is close
    resized = data.load_image_folder(tmp_path, image_size=8)
    assert resized.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(resized, data.resize_images(images, 8))
    assert data.load_images(tmp_path, split="all", image_size=(6, 4)).shape == (4, 6, 4, 3)


def test_image_folder_grayscale_mixed_sizes_and_errors(tmp_path, write_image):
    write_image(tmp_path / "a.png", np.zeros((10, 10), np.uint8))
    write_image(tmp_path / "b.png", np.full((20, 30), 255, np.uint8))
    with pytest.raises(ValueError, match=r"10x10, 20x30.*image_size"):
        data.load_image_folder(tmp_path)
    images = data.load_image_folder(tmp_path, image_size=10)
    assert images.shape == (2, 10, 10, 1)
    np.testing.assert_array_equal(images[1], 255)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        data.load_image_folder(empty)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_image_folder(tmp_path / "nowhere")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        data.load_image_folder(tmp_path, image_size=10)


def test_list_image_files_is_recursive_sorted_and_by_suffix(tmp_path, write_image):
    pixel = np.zeros((2, 2), np.uint8)
    for name in ("b/z.png", "a.jpeg", "b/c/y.JPG", "b/a.Png"):
        write_image(tmp_path / name, pixel, format="PNG")  # the suffix decides, not the content
    (tmp_path / "b" / "notes.txt").write_text("x")
    (tmp_path / "folder.png").mkdir()  # a folder with an image suffix is not a file
    files = data.list_image_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.jpeg", "b/a.Png", "b/c/y.JPG", "b/z.png"]
    with pytest.raises(ValueError, match=r"no image files.*\.png"):
        data.list_image_files(tmp_path / "folder.png")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.list_image_files(tmp_path / "nowhere")
