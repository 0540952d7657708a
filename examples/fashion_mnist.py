"""Real NVP on Fashion-MNIST.

Defaults to the images shipped with the package (Fashion-MNIST's 10,000 test images,
split 9,000 / 1,000), so it runs offline; ``--data DIR`` points it at a directory of
the IDX files (Debian's ``dataset-fashion-mnist`` installs them under
``/usr/share/datasets/fashion-mnist``) and ``--data fashion_mnist`` at tfds.
28x28 images, 2 scales, 64 feature maps, 4 residual blocks.

    python examples/fashion_mnist.py --epochs 20 --output-dir fmnist_run

Every flag of ``python -m tfp_realnvp train`` is accepted and overrides these defaults.
From Python, the same run is ``tfp_realnvp.train(**DEFAULTS, epochs=20)``.
"""

from __future__ import annotations

import sys

from tfp_realnvp.cli.preset import run_preset

DEFAULTS = {
    "data": "shipped",
    "num_scales": 2,
    "num_filters": 64,
    "num_blocks": 4,
    "batch_size": 64,
    "output_dir": "fashion_mnist_output",
}


def main(argv: list[str]) -> int:
    """Trains with these defaults, as overridden by the flags in ``argv``; returns the exit status."""
    return run_preset(argv, defaults=DEFAULTS, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
