"""Every documented tfds source trains end to end through the command line.

tfds cannot download here, so most sources run on ``tfds.testing.mock_data``. Mocked
data skips the code that prepares a dataset, where tfds imports modules that its
package metadata does not declare (``importlib_resources``); one test therefore
prepares MNIST for real from local files, so that an environment that cannot load a
real tfds dataset fails here.
"""

import json
import os
import struct

import numpy as np
import pytest

pytestmark = pytest.mark.tf_only

tfds = pytest.importorskip("tensorflow_datasets")

from tfp_realnvp.cli import main  # noqa: E402 (after importorskip: without tensorflow_datasets the module is skipped)
from tfp_realnvp.data import TFDS_DATASETS  # noqa: E402 (after importorskip: without tensorflow_datasets the module is skipped)

# The smallest flow (with --num-scales 1 below): one residual block of four filters,
# without batch norm inside the conditioners (a third of a conditioner's graph ops to
# trace); these tests are about the sources.
TINY = [
    "--num-filters",
    "4",
    "--num-blocks",
    "1",
    "--no-conditioner-batch-norm",
    "--batch-size",
    "8",
    "--max-images",
    "16",
    "--verbose",
    "0",
    "--jit-compile",
    "false",
    "--steps",
    "2",
]

# Each documented source, the flags it trains with, and the image shape it must give.
SOURCES = {
    "mnist": ([], [28, 28, 1]),
    "fashion_mnist": ([], [28, 28, 1]),
    "cifar10": ([], [32, 32, 3]),
    "celeb_a": ([], [64, 64, 3]),  # the paper's crop: 218x178 -> 148x148 -> 64x64
    "imagenet_resized/32x32": ([], [32, 32, 3]),
    "imagenet_resized/64x64": ([], [64, 64, 3]),
    "lsun/bedroom": ([], [64, 64, 3]),  # any category
}


def test_every_documented_source_is_tested():
    documented = {name.replace("<category>", "bedroom") for name in TFDS_DATASETS}
    assert documented == set(SOURCES)


#: Sources whose CLI run is in the fast set: one plain 28x28 source. The others go through
#: the same loader with other shapes (celeb_a with the paper's crop); they run with the
#: slow tests.
FAST_SOURCES = ("mnist",)


@pytest.mark.parametrize(
    "name", [name if name in FAST_SOURCES else pytest.param(name, marks=pytest.mark.slow) for name in sorted(SOURCES)]
)
def test_source_trains_through_the_cli(name, tmp_path):
    extra, shape = SOURCES[name]
    with tfds.testing.mock_data(num_examples=16):
        code = main(["train", "--data", name, "--num-scales", "1", *TINY, *extra, "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["image_shape"] == shape
    assert report["steps"] == 2 and report["test_images"] == 16
    assert np.isfinite(report["test_bits_per_dim"])


def test_tfds_can_find_the_code_of_every_source():
    # What tfds does before it downloads or prepares anything; this imported a module
    # that the environment lacked.
    for name in SOURCES:
        builder = tfds.builder(name)
        assert builder.code_path is not None and str(builder.code_path).endswith(".py"), name


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    return str(path)


@pytest.fixture(scope="module")
def prepared_mnist(tmp_path_factory):
    """MNIST prepared by tfds itself (``download_and_prepare``) from small local files."""
    from tensorflow_datasets.image_classification import mnist as mnist_module

    root = tmp_path_factory.mktemp("tfds")
    rng = np.random.default_rng(0)
    sizes = {"train": 32, "test": 16}
    files = {}
    for split, count in sizes.items():
        files[f"{split}_data"] = _write_idx(root / f"{split}-images", rng.integers(0, 256, (count, 28, 28)))
        files[f"{split}_labels"] = _write_idx(root / f"{split}-labels", rng.integers(0, 10, (count,)))
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(mnist_module, "_TRAIN_EXAMPLES", sizes["train"])
        patch.setattr(mnist_module, "_TEST_EXAMPLES", sizes["test"])
        patch.setattr(
            tfds.download.DownloadManager, "download_and_extract", lambda self, urls: {k: files[k] for k in urls}
        )
        tfds.builder("mnist", data_dir=str(root / "data")).download_and_prepare()
    finally:
        patch.undo()
    return root / "data"


@pytest.mark.slow  # a training run
def test_a_really_prepared_tfds_dataset_trains_through_the_cli(prepared_mnist, tmp_path):
    assert os.path.isdir(prepared_mnist / "mnist")
    argv = [
        "train",
        "--data",
        "mnist",
        "--data-dir",
        str(prepared_mnist),
        "--num-scales",
        "1",
        *TINY,
        "--output-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["image_shape"] == [28, 28, 1] and report["test_images"] == 16 and report["steps"] == 2
