"""Tests for the streaming readers of tfp_realnvp.data: folders and shards through tf.data, sharded by process."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tfp_realnvp import data

tf_only = pytest.mark.tf_only

CELEBA_HEIGHT, CELEBA_WIDTH, CROP = 218, 178, 148


def tags(batches):
    """The tag (the value of pixel 0, 0, 0) of every image in a list of batches."""
    return [int(t) for t in np.concatenate(batches)[:, 0, 0, 0]]


def single(dataset):
    """The images of an unbatched dataset, stacked."""
    return np.stack([image.numpy() for image in dataset])


def celeba_like():
    """A 218x178 image whose 148x148 center crop has a 4-pixel red ring around blue.

    A crop of the right place and size shows the ring at its edges and blue inside;
    anything outside the crop is green, so a crop too large or off center shows green,
    and one too small loses the red ring.
    """
    image = np.zeros((CELEBA_HEIGHT, CELEBA_WIDTH, 3), np.uint8)
    image[...] = (0, 255, 0)
    top, left = (CELEBA_HEIGHT - CROP) // 2, (CELEBA_WIDTH - CROP) // 2
    image[top : top + CROP, left : left + CROP] = (255, 0, 0)
    image[top + 4 : top + CROP - 4, left + 4 : left + CROP - 4] = (0, 0, 255)
    return image


# ------------------------------------------------------------------ process sharding


def test_process_shard_from_env():
    assert data.process_shard_from_env({}) == {"num_shards": 1, "shard_index": 0}
    environ = {data.NUM_PROCESSES_VARIABLE: "4", data.PROCESS_ID_VARIABLE: " 3 "}
    assert data.process_shard_from_env(environ) == {"num_shards": 4, "shard_index": 3}
    assert data.NUM_PROCESSES_VARIABLE == "KERAS_DISTRIBUTION_NUM_PROCESSES"
    assert data.PROCESS_ID_VARIABLE == "KERAS_DISTRIBUTION_PROCESS_ID"
    count, index = data.NUM_PROCESSES_VARIABLE, data.PROCESS_ID_VARIABLE
    for bad, pattern in [
        ({count: "2"}, rf"needs all of {count}, {index}; received .*'2'.*missing {index}\.$"),
        ({index: "1"}, rf"needs all of {count}, {index}; received .*'1'.*missing {count}\.$"),
        ({count: "two", index: "0"}, rf"^{count} must be an integer; received 'two'\.$"),
        ({count: "2", index: "x"}, rf"^{index} must be an integer; received 'x'\.$"),
        ({count: "2", index: "2"}, rf"^{index} must lie in \[0, {count}\); received {count}='2', {index}='2'\.$"),
        ({count: "2", index: "-1"}, rf"received {count}='2', {index}='-1'\.$"),
        ({count: "0", index: "0"}, rf"received {count}='0', {index}='0'\.$"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            data.process_shard_from_env(bad)


def test_process_shard_reads_os_environ(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "3")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert data.process_shard_from_env() == {"num_shards": 3, "shard_index": 1}


# ---------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(batch_size=0), "batch_size.*0"),
        (dict(batch_size=2, shuffle_buffer=0), "shuffle_buffer.*0"),
        (dict(batch_size=2, preset="imagenet"), r"preset.*'imagenet'"),
        (dict(batch_size=2, image_size=(8,)), r"image_size.*\(8,\)"),
        (dict(batch_size=2, channels=2), "channels.*2"),
        (dict(batch_size=2, num_shards=2, shard_index=2), "shard_index.*2"),
        (dict(batch_size=2, num_shards=0), "num_shards.*0"),
        (dict(batch_size=None, flip=True), "flip.*batch_size=None"),
        (dict(batch_size=2, num_shards=4), r"3 image files.*num_shards=4"),
        (dict(batch_size=2, split="validation"), r"split.*'validation'"),
    ],
)
def test_bad_options_name_the_value(tmp_path, tagged_folder, kwargs, pattern):
    tagged_folder(tmp_path, 3)
    with pytest.raises(ValueError, match=pattern):
        data.stream_image_folder(tmp_path, **kwargs)


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.stream_image_folder(tmp_path / "nowhere", batch_size=2)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.stream_dataset(tmp_path / "nowhere", batch_size=2)
    with pytest.raises(FileNotFoundError, match="gone.tfrecord"):
        data.stream_tfrecord_shards([tmp_path / "gone.tfrecord"], batch_size=2)
    with pytest.raises(ValueError, match=r"no \*\.npz files"):
        data.stream_npz_shards(tmp_path, batch_size=2)
    with pytest.raises(ValueError, match="single path"):
        data.stream_image_files(str(tmp_path), batch_size=2)


# ---------------------------------------------------------------------- image folders


@tf_only
def test_stream_folder_recursive_mixed_png_and_jpeg(tmp_path, write_image, collect):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 12, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", rgb[0])
    write_image(tmp_path / "b" / "c.PNG", rgb[1])
    write_image(tmp_path / "b" / "d" / "e.png", rgb[2][..., 0])  # grayscale file
    write_image(tmp_path / "b" / "f.jpg", np.full((12, 10, 3), 90, np.uint8), quality=95)
    write_image(tmp_path / "g.JPEG", np.full((12, 10, 3), 180, np.uint8), quality=95)
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    expected = data.load_image_folder(tmp_path)  # the in-memory reader, same sorted order
    dataset = data.stream_image_folder(tmp_path, batch_size=None, shuffle=False)
    assert dataset.element_spec == tf.TensorSpec([12, 10, 3], tf.uint8)
    streamed = single(dataset)
    assert streamed.shape == (5, 12, 10, 3)
    lossless = [0, 1, 2]  # a.png, b/c.PNG, b/d/e.png come first in path order
    np.testing.assert_array_equal(streamed[lossless], expected[lossless])
    np.testing.assert_array_equal(streamed[2], np.repeat(rgb[2][..., :1], 3, axis=-1))
    assert np.abs(streamed[3:].astype(int) - expected[3:]).max() <= 3  # JPEG decoders agree
    assert [int(round(image.mean())) for image in streamed[3:]] == [90, 180]
    batches = collect(data.stream_image_folder(tmp_path, batch_size=2, seed=0))
    assert [b.shape for b in batches] == [(2, 12, 10, 3), (2, 12, 10, 3), (1, 12, 10, 3)]
    gray = single(data.stream_image_folder(tmp_path, batch_size=None, shuffle=False, channels=1))
    assert gray.shape == (5, 12, 10, 1)


@tf_only
def test_stream_folder_sizes(tmp_path, write_image):
    import tensorflow as tf

    write_image(tmp_path / "a.png", np.zeros((10, 10, 3), np.uint8))
    write_image(tmp_path / "b.png", np.full((20, 30, 3), 255, np.uint8))
    resized = data.stream_image_folder(tmp_path, image_size=8, batch_size=None, shuffle=False)
    assert resized.element_spec.shape == [8, 8, 3]
    np.testing.assert_array_equal(single(resized)[1], 255)  # crop to square, then resize
    stored = data.stream_image_folder(tmp_path, batch_size=None, shuffle=False)
    assert stored.element_spec.shape == [10, 10, 3]  # the first file's size
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"differ in size.*b\.png"):
        single(stored)
    (tmp_path / "c.png").write_bytes(b"not a png at all")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not a PNG or JPEG.*c\.png"):
        single(data.stream_image_folder(tmp_path, image_size=8, batch_size=None, shuffle=False))


@tf_only
def test_celeba_preset_shape_dtype_and_crop_geometry(tmp_path, write_image, collect):
    import tensorflow as tf

    image = celeba_like()
    write_image(tmp_path / "img_align_celeba" / "000001.png", image)
    write_image(tmp_path / "img_align_celeba" / "000002.jpg", image, quality=95)
    dataset = data.stream_image_folder(tmp_path, preset="celeba", batch_size=2, shuffle=False)
    assert dataset.element_spec == tf.TensorSpec([None, 64, 64, 3], tf.uint8)
    (batch,) = collect(dataset)
    assert batch.shape == (2, 64, 64, 3) and batch.dtype == np.uint8
    png = batch[0].astype(int)
    # 148 -> 64 shrinks the 4-pixel ring to about 1.7 pixels: the edge is red, the middle
    # blue, and no green (outside the crop) anywhere.
    assert png[..., 1].max() == 0
    for edge in (png[0], png[-1], png[:, 0], png[:, -1]):
        assert (edge[:, 0] > 200).all() and (edge[:, 2] < 60).all()
    np.testing.assert_array_equal(png[4:-4, 4:-4].reshape(-1, 3).min(0), [0, 0, 255])
    np.testing.assert_array_equal(png[4:-4, 4:-4].reshape(-1, 3).max(0), [0, 0, 255])
    # Streaming applies exactly the in-graph preprocessing of the decoded file.
    np.testing.assert_array_equal(batch[0], data.celeba_preprocess(image).numpy())
    assert np.abs(batch[1].astype(int) - png).mean() < 8  # the JPEG copy
    small = data.stream_image_folder(tmp_path, preset="celeba", image_size=32, batch_size=None)
    assert small.element_spec.shape == [32, 32, 3]
    lsun = data.stream_image_folder(tmp_path, preset="lsun", batch_size=None, shuffle=False)
    assert lsun.element_spec.shape == [64, 64, 3]
    np.testing.assert_array_equal(single(lsun)[0], data.lsun_preprocess(image).numpy())


@tf_only
def test_stream_split_matches_load_images(tmp_path, tagged_folder):
    tagged_folder(tmp_path, 20)
    for split in ("train", "test"):
        streamed = single(
            data.stream_image_folder(tmp_path, split=split, train_fraction=0.7, batch_size=None, shuffle=False)
        )
        loaded = data.load_images(tmp_path, split=split, train_fraction=0.7)
        np.testing.assert_array_equal(streamed, loaded)


# ----------------------------------------------------------------- sharding, shuffling


@tf_only
def test_sharding_by_process_is_disjoint_and_covers_the_set(tmp_path, tagged_folder, collect):
    everything = sorted(tags([tagged_folder(tmp_path, 10)]))
    shares = [
        tags(collect(data.stream_image_folder(tmp_path, batch_size=3, seed=index, num_shards=3, shard_index=index)))
        for index in range(3)
    ]
    # Different seeds per process still give disjoint shares: files are split first.
    assert sorted(len(share) for share in shares) == [3, 3, 4]
    assert sorted(sum(shares, [])) == everything
    # The share of a process does not depend on its seed or on shuffling.
    again = tags(collect(data.stream_image_folder(tmp_path, batch_size=3, shuffle=False, num_shards=3, shard_index=1)))
    assert sorted(again) == sorted(shares[1])


@tf_only
def test_bounded_shuffle_is_deterministic_with_a_seed(tmp_path, tagged_folder, collect):
    everything = tags([tagged_folder(tmp_path, 40)])  # tags in the files' sorted order
    position = {tag: i for i, tag in enumerate(everything)}

    def order(seed, buffer=4):
        dataset = data.stream_image_folder(tmp_path, batch_size=8, seed=seed, shuffle_buffer=buffer)
        return [position[t] for t in tags(collect(dataset))]

    first = order(7)
    assert sorted(first) == list(range(40))
    assert first != list(range(40))
    assert first == order(7)
    assert first != order(8)
    # A buffer of 4 can only hold back so much: the k-th output is one of the first k + 4.
    assert all(index < k + 4 for k, index in enumerate(first))
    # A buffer larger than the set is a full shuffle, which that bound does not hold.
    assert not all(index < k + 4 for k, index in enumerate(order(7, buffer=1000)))
    # Each pass over the same dataset reshuffles.
    dataset = data.stream_image_folder(tmp_path, batch_size=40, seed=7)
    assert tags(collect(dataset)) != tags(collect(dataset))


@tf_only
def test_repeat_and_flip(tmp_path, write_image, collect):
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, 0] = 255  # bright left column
    for i in range(8):
        write_image(tmp_path / f"{i}.png", image)
    dataset = data.stream_image_folder(tmp_path, batch_size=8, seed=0, repeat=True, flip=True, drop_remainder=True)
    assert dataset.element_spec.shape == [8, 4, 6, 3]
    batches = np.concatenate(collect(dataset.take(4)))
    flipped = (batches[:, :, -1] == 255).all(axis=(1, 2))
    assert (flipped | (batches[:, :, 0] == 255).all(axis=(1, 2))).all()
    assert 4 < flipped.sum() < 28


# ----------------------------------------------------------------------------- shards


@tf_only
def test_tfrecord_shards_round_trip(tmp_path, stripes, tagged_folder):
    import tensorflow as tf

    images = np.repeat(stripes(10), 3, axis=-1)
    paths = data.write_tfrecord_shards(images, tmp_path / "shards", images_per_shard=4)
    assert [p.name for p in paths] == [f"images-0000{k}-of-00003.tfrecord" for k in range(3)]
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [p.name for p in paths]
    dataset = data.stream_tfrecord_shards(tmp_path / "shards", batch_size=None, shuffle=False)
    assert dataset.element_spec == tf.TensorSpec([6, 5, 3], tf.uint8)
    np.testing.assert_array_equal(single(dataset), images)  # PNG: lossless, stored order
    jpeg = data.write_tfrecord_shards(images, tmp_path / "jpeg", image_format="jpeg")
    assert len(jpeg) == 1
    back = single(data.stream_tfrecord_shards(jpeg, batch_size=None, shuffle=False))
    assert back.shape == images.shape and np.abs(back.astype(int) - images).mean() < 20
    # Files go in with their bytes unchanged and their names relative to the folder.
    folder = tmp_path / "folder"
    expected = tagged_folder(folder, 7)
    shards = data.write_tfrecord_shards(folder, tmp_path / "files", images_per_shard=3, prefix="train")
    assert [p.name for p in shards][-1] == "train-00002-of-00003.tfrecord"
    record = next(iter(tf.data.TFRecordDataset(str(shards[0]))))
    example = tf.train.Example.FromString(record.numpy())
    first = data.list_image_files(folder)[0]
    assert example.features.feature["image/encoded"].bytes_list.value[0] == first.read_bytes()
    assert example.features.feature["image/format"].bytes_list.value[0] == b"png"
    name = example.features.feature["image/filename"].bytes_list.value[0].decode()
    assert name == first.relative_to(folder).as_posix()
    streamed = single(data.stream_tfrecord_shards(tmp_path / "files", prefix="train", batch_size=None, shuffle=False))
    np.testing.assert_array_equal(streamed, expected)


@tf_only
def test_shard_writers_never_overwrite_unless_asked(tmp_path, stripes):
    target = tmp_path / "shards"
    data.write_tfrecord_shards(stripes(6), target, images_per_shard=2)
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(FileExistsError, match=r"3 images-\*\.tfrecord.*overwrite=True"):
        data.write_tfrecord_shards(stripes(2), target, images_per_shard=2)
    assert sorted(p.name for p in target.iterdir()) == before
    data.write_tfrecord_shards(stripes(2), target, images_per_shard=2, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["images-00000-of-00001.tfrecord"]
    # Another prefix lives next to them; a failed write leaves nothing behind.
    with pytest.raises(ValueError, match="quality.*0"):
        data.write_tfrecord_shards(stripes(2), target, prefix="test", quality=0)
    with pytest.raises(ValueError, match="not a PNG or JPEG"):
        (tmp_path / "fake.png").write_bytes(b"GIF89a")
        data.write_tfrecord_shards([tmp_path / "fake.png"], target, prefix="test")
    with pytest.raises(ValueError, match="no images"):
        data.write_npz_shards([], target, prefix="test")
    assert sorted(p.name for p in target.iterdir()) == ["images-00000-of-00001.tfrecord"]


@tf_only
def test_npz_shards_round_trip(tmp_path, stripes):
    import tensorflow as tf

    images = stripes(10)
    paths = data.write_npz_shards(iter(images), tmp_path, images_per_shard=4, compress=True)
    assert [p.name for p in paths] == [f"images-0000{k}-of-00003.npz" for k in range(3)]
    np.testing.assert_array_equal(data.load_npz(paths[2]), images[8:])
    dataset = data.stream_npz_shards(tmp_path, batch_size=None, shuffle=False)
    assert dataset.element_spec == tf.TensorSpec([6, 5, 1], tf.uint8)
    assert int(dataset.cardinality()) == 10  # from the headers, no pixel read
    np.testing.assert_array_equal(single(dataset), images)
    half = data.stream_npz_shards(tmp_path, batch_size=4, seed=0, num_shards=2, shard_index=1)
    assert int(half.cardinality()) == 1  # shard 1 of 2 holds the file of 4 images
    resized = data.stream_npz_shards(paths, image_size=4, batch_size=None)
    assert resized.element_spec.shape == [4, 4, 1]
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 3, 3, 1), np.uint8))
    with pytest.raises(ValueError, match=r"shapes.*\[3, 3, 1\].*\[6, 5, 1\]"):
        data.stream_npz_shards(tmp_path, batch_size=2)
    with pytest.raises(ValueError, match="share one shape"):
        data.write_npz_shards([images[0], np.zeros((2, 2, 1), np.uint8)], tmp_path / "x")


@tf_only
@pytest.mark.parametrize("kind", ["tfrecord", "npz"])
def test_shards_by_process_are_disjoint_and_cover_the_set(tmp_path, stripes, collect, kind):
    images = stripes(20)
    write = data.write_tfrecord_shards if kind == "tfrecord" else data.write_npz_shards
    read = data.stream_tfrecord_shards if kind == "tfrecord" else data.stream_npz_shards
    write(np.repeat(images, 3, axis=-1) if kind == "tfrecord" else images, tmp_path, images_per_shard=3)  # 7 files
    shares = []
    for index in range(3):
        batches = collect(read(tmp_path, batch_size=4, seed=index, num_shards=3, shard_index=index))
        shares.append([int(t) for t in np.concatenate(batches)[:, 0, 1, 0]])
    assert sorted(sum(shares, [])) == list(range(20))
    assert [len(share) for share in shares] == [8, 6, 6]  # files 0,3,6 / 1,4 / 2,5 (file 6 holds 2)
    with pytest.raises(ValueError, match=r"7 .*num_shards=8"):
        read(tmp_path, batch_size=4, num_shards=8, shard_index=0)


@tf_only
def test_shuffled_shards_are_seeded(tmp_path, stripes, collect):
    data.write_tfrecord_shards(stripes(24), tmp_path, images_per_shard=4)

    def order(seed):
        dataset = data.stream_tfrecord_shards(tmp_path, batch_size=24, seed=seed, shuffle_buffer=8, channels=1)
        return [int(t) for t in collect(dataset)[0][:, 0, 1, 0]]

    first = order(1)
    assert sorted(first) == list(range(24)) and first != list(range(24))
    assert first == order(1) and first != order(2)


# ------------------------------------------------------------------------ dispatching


@tf_only
def test_stream_dataset_picks_the_reader(tmp_path, stripes, tagged_folder):
    folder = tmp_path / "folder"
    tagged_folder(folder, 5)
    np.testing.assert_array_equal(
        single(data.stream_dataset(folder, batch_size=None, shuffle=False)),
        single(data.stream_image_folder(folder, batch_size=None, shuffle=False)),
    )
    records = tmp_path / "records"
    rgb = np.repeat(stripes(6), 3, axis=-1)
    data.write_tfrecord_shards(rgb[:4], records, prefix="train", images_per_shard=2)
    data.write_tfrecord_shards(rgb[4:], records, prefix="test", images_per_shard=2)
    test = single(data.stream_dataset(records, split="test", batch_size=None, shuffle=False))
    np.testing.assert_array_equal(test, rgb[4:])
    assert len(single(data.stream_dataset(records, batch_size=None))) == 6
    with pytest.raises(ValueError, match=r"split 'validation'.*\['test', 'train'\]"):
        data.stream_dataset(records, split="validation", batch_size=2)
    arrays = tmp_path / "arrays"
    data.write_npz_shards(stripes(6), arrays, prefix="train", images_per_shard=4)
    train = single(data.stream_dataset(arrays, split="train", batch_size=None, shuffle=False))
    np.testing.assert_array_equal(train, stripes(6))
    one = single(data.stream_dataset(arrays / "train-00001-of-00002.npz", batch_size=None, shuffle=False))
    np.testing.assert_array_equal(one, stripes(6)[4:])
    pattern = str(records / "train-*.tfrecord")
    assert len(single(data.stream_dataset(pattern, batch_size=None))) == 4
    data.write_npz_shards(stripes(2), records)
    with pytest.raises(ValueError, match=r"both \.tfrecord and \.npz"):
        data.stream_dataset(records, batch_size=2)
    with pytest.raises(ValueError, match=r"split applies to folders.*'train'"):
        data.stream_dataset(pattern, split="train", batch_size=2)


@tf_only
@pytest.mark.parametrize("kind", ["tfrecord", "npz"])
def test_shards_without_split_names_are_one_set_split_by_image(tmp_path, stripes, collect, kind):
    images = stripes(40)
    write = data.write_tfrecord_shards if kind == "tfrecord" else data.write_npz_shards
    channels = {"channels": 1} if kind == "tfrecord" else {}
    write(images, tmp_path, images_per_shard=7)  # the default prefix, "images"

    def tags_of(split, **options):
        dataset = data.stream_dataset(tmp_path, split=split, batch_size=8, **channels, **options)
        return sorted(int(t) for batch in collect(dataset) for t in batch[:, 0, 1, 0])

    train, test = tags_of("train", shuffle=False), tags_of("test", shuffle=False)
    assert sorted(train + test) == tags_of("all") == list(range(40))
    assert 28 <= len(train) <= 39 and test  # about train_fraction=0.9 of them
    # A fixed split: the same under any shuffle and for the processes' shares together.
    assert tags_of("train", seed=5) == train
    shares = [tags_of("test", num_shards=2, shard_index=i, seed=i) for i in range(2)]
    assert sorted(shares[0] + shares[1]) == test
    assert len(tags_of("train", train_fraction=0.5, shuffle=False)) < len(train)


@tf_only
def test_shards_named_after_one_split_only_refuse_the_other(tmp_path, stripes):
    data.write_npz_shards(stripes(4), tmp_path, prefix="train")
    assert len(single(data.stream_dataset(tmp_path, split="train", batch_size=None))) == 4
    with pytest.raises(ValueError, match=r"no shard of split 'test'.*\['train'\]-\*.*prefix='test'"):
        data.stream_dataset(tmp_path, split="test", batch_size=2)


# ---------------------------------------------------------------------------- memory


def _graph_nodes(dataset):
    """Every node of the graph that defines ``dataset``, its functions included."""
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    return nodes


@tf_only
def test_streams_hold_file_names_not_images(tmp_path, tagged_folder, stripes, monkeypatch):
    """The pipeline never calls an in-memory loader, and its graph embeds no pixels.

    So its memory does not grow with the set: the only data it carries are file names.
    """
    import tensorflow as tf

    tagged_folder(tmp_path / "folder", 30)
    data.write_tfrecord_shards(np.repeat(stripes(30), 3, axis=-1), tmp_path / "records", images_per_shard=10)
    data.write_npz_shards(stripes(30), tmp_path / "arrays", images_per_shard=10)

    def refuse(*args, **kwargs):
        raise AssertionError("a streaming reader called an in-memory loader")

    loaders = (
        "load_images",
        "load_image_folder",
        "load_idx_dir",
        "read_idx",
        "load_shipped",
        "get_dataset",
        "make_dataset",
        "resize_images",
        "_read_shipped",
    )
    for name, module in list(sys.modules.items()):
        if name == "tfp_realnvp.data" or name.startswith("tfp_realnvp.data."):
            for loader in loaders:
                if hasattr(module, loader):
                    monkeypatch.setattr(module, loader, refuse)
    sources = {"folder": 30, "records": 3, "arrays": 3}
    for source, file_count in sources.items():
        dataset = data.stream_dataset(tmp_path / source, preset="celeba", batch_size=8, seed=0)
        assert sum(int(batch.shape[0]) for batch in dataset) == 30
        for node in _graph_nodes(dataset):
            assert "Cache" not in node.op, f"{source}: the pipeline caches ({node.op})"
            if node.op == "Const":
                proto = node.attr["value"].tensor
                size = int(np.prod([d.size for d in proto.tensor_shape.dim], dtype=np.int64))
                if proto.dtype == tf.string.as_datatype_enum:  # file names (and npz keys), nothing else
                    assert size <= file_count, f"{source}: {size} strings"
                else:
                    assert size <= 16, f"{source}: a constant of {size} numbers"
