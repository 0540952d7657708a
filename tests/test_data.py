"""Tests for tfp_realnvp.data: shipped data, local formats, checks, tf.data and tfds."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from tfp_realnvp import data

tf_only = pytest.mark.tf_only


def write_idx(path, array, *, compress=True):
    """Writes ``array`` as an IDX file (big-endian), gzip-compressed when asked."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def stripes(count, height=6, width=5):
    """``count`` distinct uint8 images, left-right asymmetric, image ``i`` tagged by ``i``."""
    images = np.zeros((count, height, width, 1), np.uint8)
    images[:, :, 0, 0] = 255  # bright left column: a flip moves it to the right
    images[:, 0, 1, 0] = np.arange(count)  # identity of the image
    return images


# ------------------------------------------------------------------------ shipped data


def test_shipped_all_is_fashion_mnist_test_split():
    images, labels = data.load_shipped(split="all")
    assert images.shape == (10000, 28, 28, 1)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert len(data.FASHION_MNIST_CLASSES) == 10
    assert images.max() == 255 and images.min() == 0


def test_shipped_splits_are_disjoint_deterministic_and_cover_everything():
    all_images, _ = data.load_shipped(split="all")
    train, train_labels = data.load_shipped(split="train")
    test, test_labels = data.load_shipped(split="test")
    assert train.shape == (9000, 28, 28, 1) and test.shape == (1000, 28, 28, 1)
    assert train_labels.shape == (9000,) and test_labels.shape == (1000,)
    keys = {img.tobytes() for img in all_images}
    train_keys = {img.tobytes() for img in train}
    test_keys = {img.tobytes() for img in test}
    assert not train_keys & test_keys
    assert train_keys | test_keys == keys
    again, _ = data.load_shipped(split="train")
    np.testing.assert_array_equal(train, again)
    # The result is a copy: changing it does not change later loads.
    train[0] = 7
    assert not np.array_equal(data.load_shipped(split="train")[0][0], train[0])


def test_shipped_train_fraction_and_padding():
    train, _ = data.load_shipped(split="train", train_fraction=0.5)
    assert train.shape[0] == 5000
    padded, _ = data.load_shipped(split="test", pad_to=32)
    plain, _ = data.load_shipped(split="test")
    assert padded.shape == (1000, 32, 32, 1)
    np.testing.assert_array_equal(padded[:, 2:30, 2:30], plain)
    assert padded[:, :2].max() == 0 and padded[:, :, 30:].max() == 0


@pytest.mark.parametrize(
    "kwargs, received",
    [
        (dict(split="validation"), "'validation'"),
        (dict(train_fraction=1.0), "1.0"),
        (dict(train_fraction=0), "0"),
        (dict(pad_to=16), "16x16"),
        (dict(pad_to=(32, -1)), "(32, -1)"),
    ],
)
def test_shipped_bad_options_name_the_value(kwargs, received):
    with pytest.raises(ValueError, match=received.replace("(", r"\(").replace(")", r"\)")):
        data.load_shipped(**kwargs)


def test_load_images_defaults_to_shipped_train():
    images = data.load_images()
    np.testing.assert_array_equal(images, data.load_shipped(split="train")[0])
    assert data.load_images(split="test", image_size=14).shape == (1000, 14, 14, 1)


# -------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_idx_round_trip(tmp_path, compress, dtype):
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


def test_idx_directory_splits_and_dispatch(tmp_path):
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
    # get_dataset / load_images recognise the directory and keep its own splits.
    np.testing.assert_array_equal(data.load_images(tmp_path, split="test"), test)
    assert data.load_images(str(tmp_path), split="train", pad_to=8).shape == (5, 8, 8, 1)


def test_single_idx_file_is_split_by_fraction(tmp_path):
    path = write_idx(tmp_path / "images-idx3-ubyte.gz", stripes(10)[..., 0])
    train = data.load_images(path, split="train", train_fraction=0.7)
    test = data.load_images(path, split="test", train_fraction=0.7)
    assert train.shape == (7, 6, 5, 1) and test.shape == (3, 6, 5, 1)
    assert not set(train[:, 0, 1, 0]) & set(test[:, 0, 1, 0])
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        data.load_images(other)


def test_idx_directory_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_idx_dir(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_idx_dir(tmp_path / "nowhere")


def test_debian_fashion_mnist_directory_if_installed():
    from pathlib import Path

    directory = Path("/usr/share/datasets/fashion-mnist")
    if not (directory / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    images, labels = data.load_idx_dir(directory, split="test")
    shipped, shipped_labels = data.load_shipped(split="all")
    np.testing.assert_array_equal(images, shipped)
    np.testing.assert_array_equal(labels, shipped_labels)


# -------------------------------------------------------------------------------- npz


def test_npz_keys_and_splits(tmp_path):
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
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        data.load_npz(tmp_path / "absent.npz")
    # A single set is split by train_fraction, disjointly.
    train = data.load_images(many, split="train", train_fraction=0.8)
    test = data.load_images(many, split="test", train_fraction=0.8)
    assert len(train) == 8 and len(test) == 2
    assert not set(train[:, 0, 1, 0]) & set(test[:, 0, 1, 0])


def test_npz_with_keras_style_split_keys(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=stripes(4)[..., 0], y_train=np.zeros(4), x_test=stripes(2)[..., 0])
    assert data.load_images(path, split="train").shape == (4, 6, 5, 1)
    assert data.load_images(path, split="test").shape == (2, 6, 5, 1)
    assert data.load_images(path, split="all", key="x_test").shape == (2, 6, 5, 1)


# ----------------------------------------------------------------------- image folder


def test_image_folder_png_and_jpeg(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 12, 16, 3), dtype=np.uint8)
    for i, image in enumerate(rgb):
        Image.fromarray(image).save(tmp_path / f"img{i}.png")
    sub = tmp_path / "more"
    sub.mkdir()
    Image.fromarray(np.full((12, 16, 3), 200, np.uint8)).save(sub / "x.JPG", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load_image_folder(tmp_path)
    assert images.shape == (4, 12, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:3], rgb)  # PNG is lossless, files sorted by path
    assert abs(int(images[3].mean()) - 200) <= 2  # JPEG is close
    resized = data.load_image_folder(tmp_path, image_size=8)
    assert resized.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(resized, data.resize_images(images, 8))
    assert data.load_images(tmp_path, split="all", image_size=(6, 4)).shape == (4, 6, 4, 3)


def test_image_folder_grayscale_mixed_sizes_and_errors(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(tmp_path / "b.png")
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


def test_resize_crops_to_aspect_ratio():
    image = np.zeros((1, 20, 40, 1), np.uint8)
    image[:, :, 10:30] = 255  # the centered square is white, the sides black
    out = data.resize_images(image, 10)
    assert out.shape == (1, 10, 10, 1)
    assert out.min() == 255


# ------------------------------------------------------------------------------ checks


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.full((2, 4, 4, 1), 300.5, np.float32), r"float32.*\[2, 4, 4, 1\].*max 300.5"),
        (np.full((2, 4, 4, 1), 300, np.int32), r"\[0, 256\).*int32.*max 300"),
        (np.full((2, 4, 4, 1), -1, np.int64), r"int64.*min -1"),
        (np.array([[[[np.nan, 1.0]]]]), r"NaN.*float64.*\[1, 1, 1, 2\].*1 NaN"),
        (np.full((1, 2, 2, 1), 1.5), r"integer pixel.*float64.*1.5"),
        (np.zeros((4, 4), np.uint8), r"rank 4.*uint8.*\[4, 4\]"),
        (np.zeros((1, 2, 4, 4, 1), np.uint8), r"rank 4.*\[1, 2, 4, 4, 1\]"),
        (np.zeros((0, 4, 4, 1), np.uint8), r"\[0, 4, 4, 1\]"),
        (np.zeros((1, 4, 4, 1), bool), r"dtype bool"),
        (np.array([[["a"]]]), r"dtype <U1"),
    ],
)
def test_check_images_errors_name_what_was_received(array, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.check_images(array, name="batch")


def test_check_images_accepts_pixels():
    out = data.check_images(np.zeros((2, 3, 3)))
    assert out.shape == (2, 3, 3, 1) and out.dtype == np.uint8
    values = np.array([0.0, 17.0, 255.0]).reshape(1, 1, 3, 1)
    np.testing.assert_array_equal(data.check_images(values)[0, 0, :, 0], [0, 17, 255])
    same = np.zeros((1, 2, 2, 3), np.uint8)
    assert data.check_images(same) is same


def test_check_images_on_backend_tensor():
    import keras

    tensor = keras.ops.convert_to_tensor(np.full((1, 2, 2, 1), 3.0, np.float32))
    np.testing.assert_array_equal(data.check_images(tensor), 3)
    with pytest.raises(ValueError, match="300"):
        data.check_images(keras.ops.convert_to_tensor(np.full((1, 2, 2, 1), 300.0)))


# ---------------------------------------------------------------------------- tf.data


def collect(dataset):
    return [batch.numpy() for batch in dataset]


@tf_only
def test_make_dataset_batches():
    import tensorflow as tf

    images = stripes(10)
    dataset = data.make_dataset(images, batch_size=4, shuffle=False)
    assert dataset.element_spec.dtype == tf.uint8
    batches = collect(dataset)
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    dropped = collect(data.make_dataset(images, batch_size=4, shuffle=False, drop_remainder=True))
    assert [len(b) for b in dropped] == [4, 4]
    repeated = data.make_dataset(images, batch_size=4, repeat=True, seed=1, drop_remainder=True)
    assert repeated.element_spec.shape.as_list() == [4, 6, 5, 1]
    assert len(collect(repeated.take(7))) == 7


@tf_only
def test_make_dataset_shuffle_is_seeded():
    images = stripes(64)

    def order(seed):
        dataset = data.make_dataset(images, batch_size=16, seed=seed)
        return np.concatenate(collect(dataset))[:, 0, 1, 0]

    first = order(3)
    assert sorted(first.tolist()) == list(range(64))
    np.testing.assert_array_equal(first, order(3))
    assert not np.array_equal(first, order(4))
    assert not np.array_equal(first, np.arange(64))
    # A fresh epoch of the same dataset reshuffles.
    dataset = data.make_dataset(images, batch_size=64, seed=3)
    epoch1, epoch2 = collect(dataset)[0], collect(dataset)[0]
    assert not np.array_equal(epoch1, epoch2)


@tf_only
def test_make_dataset_flips():
    images = stripes(64)
    mirrored = images[:, :, ::-1]

    def run(flip, seed=0):
        return np.concatenate(collect(data.make_dataset(images, batch_size=16, shuffle=False,
                                                        flip=flip, seed=seed)))

    out = run(True)
    is_flipped = (out == mirrored).all(axis=(1, 2, 3))
    is_plain = (out == images).all(axis=(1, 2, 3))
    assert (is_flipped | is_plain).all()
    assert 10 < is_flipped.sum() < 54
    np.testing.assert_array_equal(out, run(True))
    assert not np.array_equal(out, run(True, seed=1))
    np.testing.assert_array_equal(run(False), images)


@tf_only
def test_make_dataset_from_get_dataset_and_errors():
    import tensorflow as tf

    single = data.get_dataset("shipped", split="test", pad_to=32)
    assert single.element_spec == tf.TensorSpec([32, 32, 1], tf.uint8)
    batches = data.make_dataset(single, batch_size=256, shuffle=True, seed=0, flip=True)
    first = next(iter(batches))
    assert first.shape == (256, 32, 32, 1) and first.dtype == tf.uint8
    with pytest.raises(ValueError, match="300.5"):
        data.make_dataset(np.full((2, 4, 4, 1), 300.5), batch_size=2)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"batch_size.*{bad!r}"):
            data.make_dataset(stripes(2), batch_size=bad)
    with pytest.raises(ValueError, match="element_spec"):
        data.make_dataset(tf.data.Dataset.from_tensor_slices(np.zeros((2, 3), np.float32)),
                          batch_size=2)


@tf_only
def test_make_dataset_feeds_keras_fit():
    import keras

    class Tiny(keras.Model):
        """Reads uint8 batches as x with no labels; its loss comes from add_loss."""

        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            y = self.dense(self.flatten(keras.ops.cast(x, "float32") / 255.0))
            self.add_loss(keras.ops.mean(y**2))
            return y

    images = stripes(8)
    model = Tiny()
    model.compile(optimizer="sgd")
    history = model.fit(data.make_dataset(images, batch_size=4, seed=0), epochs=1, verbose=0,
                        shuffle=False)
    assert np.isfinite(history.history["loss"][0])


@tf_only
def test_get_dataset_local_sources(tmp_path):
    np.savez(tmp_path / "x.npz", images=stripes(10))
    dataset = data.get_dataset(tmp_path / "x.npz", split="all")
    np.testing.assert_array_equal(np.stack(collect(dataset)), stripes(10))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.get_dataset(str(tmp_path / "missing.npz"))


# ------------------------------------------------------------------------------- tfds


@tf_only
def test_celeba_preprocess_crops_center_148_then_resizes_to_64():
    image = np.zeros((218, 178, 3), np.uint8)
    top, left = (218 - 148) // 2, (178 - 148) // 2
    image[top:top + 148, left:left + 148] = (10, 120, 250)  # the crop; the rest is black
    out = data.celeba_preprocess(image)
    assert out.shape == (64, 64, 3) and out.dtype.name == "uint8"
    np.testing.assert_array_equal(out.numpy().reshape(-1, 3).min(0), [10, 120, 250])
    np.testing.assert_array_equal(out.numpy().reshape(-1, 3).max(0), [10, 120, 250])
    assert data.celeba_preprocess(image, image_size=32).shape == (32, 32, 3)


@tf_only
def test_lsun_preprocess_short_side_96_then_crop_64():
    import tensorflow as tf

    image = np.zeros((120, 200, 3), np.uint8)
    image[:, 100:] = 255  # right half white: the center crop keeps both halves
    out = data.lsun_preprocess(image).numpy()
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # Resized to 96x160, the center 64x64 covers columns 48..111: half black, half white.
    assert out[:, :30].max() == 0 and out[:, 34:].min() == 255
    crop = data.lsun_preprocess(image, random_crop=True, seed=tf.constant([1, 2]))
    assert crop.shape == (64, 64, 3)
    np.testing.assert_array_equal(
        crop, data.lsun_preprocess(image, random_crop=True, seed=tf.constant([1, 2]))
    )
    assert data.lsun_preprocess(np.zeros((17, 47, 3), np.uint8)).shape == (64, 64, 3)


@tf_only
def test_unknown_tfds_name_lists_known_names():
    with pytest.raises(ValueError, match=r"'imagenet'.*celeb_a.*cifar10.*lsun"):
        data.load_tfds("imagenet", split="train")
    with pytest.raises(ValueError, match=r"unknown image source 'cifar100'.*cifar10"):
        data.get_dataset("cifar100")


@tf_only
@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("mnist", {}, [28, 28, 1]),
        ("mnist", dict(pad_to=32), [32, 32, 1]),
        ("cifar10", dict(image_size=16), [16, 16, 3]),
        ("celeb_a", {}, [64, 64, 3]),
        ("lsun/bedroom", {}, [64, 64, 3]),
        ("imagenet_resized/32x32", {}, [32, 32, 3]),
    ],
)
def test_tfds_end_to_end_with_mock_data(name, kwargs, shape):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        dataset = data.get_dataset(name, split="train", **kwargs)
        assert dataset.element_spec == tf.TensorSpec(shape, tf.uint8)
        images = collect(dataset)
        batches = collect(data.make_dataset(dataset, batch_size=2, shuffle=False))
    assert len(images) == 3
    assert all(image.shape == tuple(shape) for image in images)
    assert [len(b) for b in batches] == [2, 1]


def test_tf_functions_point_to_load_images_without_tensorflow():
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed")
    with pytest.raises(ImportError, match="load_images"):
        data.make_dataset(stripes(2), batch_size=2)
    with pytest.raises(ImportError, match="load_images"):
        data.get_dataset("shipped")
