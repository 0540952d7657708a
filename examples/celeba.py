"""Real NVP on CelebA 64x64, the paper's setup (Dinh et al., 2017, section 4).

Data: tfds ``celeb_a`` with the paper's preprocessing (center crop 148x148, resize to
64x64) and random horizontal flips; batch 64; Adam 1e-3; L2 5e-5 on the weight-norm
scales. Architecture as we read section 4.1 for the 64x64 datasets: the multi-scale
flow repeats until the last scale works on 4x4 (5 scales for 64x64), with 2 residual
blocks and 32 feature maps at the first scale, doubling at each scale; batch
normalization after every coupling.

    python examples/celeba.py --data-dir ~/tensorflow_datasets --steps 100000 --output-dir celeba_run

Every flag of ``python -m tfp_realnvp train`` is accepted and overrides the defaults
below (e.g. ``--data some_folder_of_faces --image-size 64`` trains on local images).
"""

from __future__ import annotations

import sys

from tfp_realnvp.cli import main

PAPER_DEFAULTS = [
    "--data",
    "celeb_a",
    "--test-split",
    "test",
    "--num-scales",
    "5",
    "--num-filters",
    "32",
    "--num-blocks",
    "2",
    "--batch-size",
    "64",
    "--learning-rate",
    "1e-3",
    "--flip",
    "--output-dir",
    "celeba_output",
]

if __name__ == "__main__":
    raise SystemExit(main(["train", *PAPER_DEFAULTS, *sys.argv[1:]]))
