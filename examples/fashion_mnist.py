"""Real NVP on Fashion-MNIST.

Defaults to the images shipped with the package (Fashion-MNIST's 10,000 test images,
split 9,000 / 1,000), so it runs offline; ``--data DIR`` points it at a directory of
the IDX files (Debian's ``dataset-fashion-mnist`` installs them under
``/usr/share/datasets/fashion-mnist``) and ``--data fashion_mnist`` at tfds.
28x28 images, 2 scales, 64 feature maps, 4 residual blocks.

    python examples/fashion_mnist.py --epochs 20 --output-dir fmnist_run

Every flag of ``python -m tfp_realnvp train`` is accepted and overrides these defaults.
"""

from __future__ import annotations

import sys

from tfp_realnvp.cli import main

DEFAULTS = [
    "--data",
    "shipped",
    "--num-scales",
    "2",
    "--num-filters",
    "64",
    "--num-blocks",
    "4",
    "--batch-size",
    "64",
    "--output-dir",
    "fashion_mnist_output",
]

if __name__ == "__main__":
    raise SystemExit(main(["train", *DEFAULTS, *sys.argv[1:]]))
