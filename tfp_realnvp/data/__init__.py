"""uint8 image data for Real NVP: the shipped default, local files, tfds names and streams.

Every source here yields images as they are stored, ``uint8`` in ``[0, 256)`` and laid
out NHWC (``[N, H, W, C]`` for arrays, ``[H, W, C]`` per element or ``[B, H, W, C]`` per
batch for datasets). The flow's own preprocessing adds dequantization noise and maps
pixels to logit space, so nothing here scales or normalises pixels.

Three entry points, one return type each:

* :func:`load_images` returns a NumPy ``uint8`` array ``[N, H, W, C]`` for the sources
  that live on disk: ``"shipped"`` (the default), a ``.npz`` file, an IDX file or
  directory (MNIST / Fashion-MNIST layout) or a folder of PNG/JPEG files. It needs
  only NumPy and Pillow, so it works on every Keras backend, TensorFlow or not. The
  array feeds ``model.fit(x, batch_size=...)`` directly, or :func:`make_dataset`.
* :func:`get_dataset` returns a ``tf.data.Dataset`` whose elements are single ``uint8``
  images ``[H, W, C]`` with a fully known static shape (read it from
  ``dataset.element_spec.shape``). It takes everything :func:`load_images` takes plus
  the tfds names listed in :data:`TFDS_DATASETS`. It needs TensorFlow.
* :func:`stream_dataset` (and the readers it picks: :func:`stream_image_folder`,
  :func:`stream_tfrecord_shards`, :func:`stream_npz_shards`) reads sets larger than
  memory file by file: decoded in parallel, with the paper's CelebA / LSUN crops as
  ``preset=``, shuffled in a bounded buffer, sharded by process, batched. Memory stays
  flat as the set grows. It needs TensorFlow.

:func:`make_dataset` turns an array or a dataset of single images into the training
pipeline: shuffled, optionally flipped, batched and prefetched ``uint8`` batches
``[B, H, W, C]`` with no labels, which Keras ``fit`` reads as ``x``::

    from tfp_realnvp import data

    train = data.make_dataset(data.load_images(split="train"), batch_size=64, seed=0)
    test = data.make_dataset(data.load_images(split="test"), batch_size=256, shuffle=False)
    model.fit(train, validation_data=test, epochs=10)

    celeba = data.stream_image_folder("img_align_celeba", preset="celeba", batch_size=64,
                                      seed=0, flip=True, repeat=True,
                                      **data.process_shard_from_env())
    model.fit(celeba, steps_per_epoch=1000, epochs=100)

Splits. IDX directories and tfds datasets come with their own splits. A source that is
one set of images (the shipped file, a ``.npz`` without split keys, one IDX file, an
image folder) is split deterministically: a fixed permutation puts
``round(train_fraction * N)`` images in ``"train"`` and the rest in ``"test"``, each
kept in the original order; ``"all"`` returns every image. The split does not depend
on NumPy's global random state, and a streamed folder is split the same way. A folder
of shards whose names carry a split (``train-*``, ``test-*``) has those splits; one
without (the writers' default prefix, ``images``) is one set, split by image with a
fixed hash (about ``train_fraction`` of the images in ``"train"``).

Modules, one concern each (every name in a module's ``__all__`` is re-exported here;
the helpers the modules share, listed in each module's docstring, are not):

* ``checks``: :func:`check_images` and the argument checks all loaders share;
* ``resizing``: crops, resizes and padding, NumPy/Pillow and TensorFlow (the presets);
* ``local``: IDX files and directories, ``.npz`` files, image folders, into memory;
* ``shipped``: the Fashion-MNIST set inside the package;
* ``tfds``: tfds names and their preprocessing;
* ``sources``: :func:`load_images` and :func:`get_dataset`, by source;
* ``streaming``: :func:`stream_dataset`, which picks the reader for a path, and the
  readers of the modules below, re-exported;
* ``stream_common``: what the streaming readers share (options, process shares, file
  lists, decoding);
* ``image_streams``: image files and folders through ``tf.data``;
* ``tfrecord_shards`` and ``npz_shards``: writing shards of each kind, and streaming them;
* ``shard_files``: finding shard files and writing a complete set of them;
* ``file_batches``: image folders as NumPy batches without TensorFlow (JAX);
* ``pipeline``: :func:`make_dataset`;
* ``labelled``: :func:`load_labelled_images`, images with class labels for
  class-conditional models.

Nothing imports TensorFlow at import time: the functions that build ``tf.data``
pipelines or TFRecords import it when called, so ``import tfp_realnvp.data`` works
where TensorFlow is not installed.
"""

from tfp_realnvp.data.checks import SPLITS, check_images
from tfp_realnvp.data.file_batches import FolderBatches, decode_image_file, folder_files
from tfp_realnvp.data.labelled import load_labelled_images
from tfp_realnvp.data.local import (
    IMAGE_SUFFIXES,
    list_image_files,
    load_idx_dir,
    load_image_folder,
    load_npz,
    read_idx,
)
from tfp_realnvp.data.pipeline import make_dataset
from tfp_realnvp.data.resizing import (
    PRESETS,
    celeba_preprocess,
    lsun_preprocess,
    pad_images,
    resize_images,
)
from tfp_realnvp.data.shipped import FASHION_MNIST_CLASSES, SHIPPED_FILE, load_shipped
from tfp_realnvp.data.sources import get_dataset, load_images
from tfp_realnvp.data.streaming import (
    DEFAULT_SHUFFLE_BUFFER,
    NUM_PROCESSES_VARIABLE,
    PROCESS_ID_VARIABLE,
    process_shard_from_env,
    stream_dataset,
    stream_image_files,
    stream_image_folder,
    stream_npz_shards,
    stream_tfrecord_shards,
    write_npz_shards,
    write_tfrecord_shards,
)
from tfp_realnvp.data.tfds import TFDS_DATASETS, check_tfds_available, is_tfds_name, load_tfds, tfds_key

__all__ = [
    "DEFAULT_SHUFFLE_BUFFER",
    "FASHION_MNIST_CLASSES",
    "FolderBatches",
    "IMAGE_SUFFIXES",
    "NUM_PROCESSES_VARIABLE",
    "PRESETS",
    "PROCESS_ID_VARIABLE",
    "SHIPPED_FILE",
    "SPLITS",
    "TFDS_DATASETS",
    "celeba_preprocess",
    "check_images",
    "check_tfds_available",
    "decode_image_file",
    "folder_files",
    "get_dataset",
    "is_tfds_name",
    "list_image_files",
    "load_idx_dir",
    "load_image_folder",
    "load_images",
    "load_labelled_images",
    "load_npz",
    "load_shipped",
    "load_tfds",
    "lsun_preprocess",
    "make_dataset",
    "pad_images",
    "process_shard_from_env",
    "read_idx",
    "resize_images",
    "stream_dataset",
    "stream_image_files",
    "stream_image_folder",
    "stream_npz_shards",
    "stream_tfrecord_shards",
    "tfds_key",
    "write_npz_shards",
    "write_tfrecord_shards",
]
