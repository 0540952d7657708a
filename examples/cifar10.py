"""Real NVP on CIFAR-10, the paper's configuration (Dinh et al., 2017, section 4.1).

2 scales (one squeeze), 8 residual blocks, 64 feature maps, batch norm after every
coupling, batch 64, Adam 1e-3, random horizontal flips; data from tfds ``cifar10``.
The paper reports 3.49 bits/dim on the test set after long training.

    python examples/cifar10.py --data-dir ~/tensorflow_datasets --steps 200000 --output-dir cifar_run

Every flag of ``python -m tfp_realnvp train`` is accepted and overrides these defaults.
"""

from __future__ import annotations

import sys

from tfp_realnvp.cli import main

PAPER_DEFAULTS = [
    "--data",
    "cifar10",
    "--num-scales",
    "2",
    "--num-filters",
    "64",
    "--num-blocks",
    "8",
    "--batch-size",
    "64",
    "--learning-rate",
    "1e-3",
    "--flip",
    "--output-dir",
    "cifar10_output",
]

if __name__ == "__main__":
    raise SystemExit(main(["train", *PAPER_DEFAULTS, *sys.argv[1:]]))
