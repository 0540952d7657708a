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
From Python, the same run is ``tfp_realnvp.train(**PAPER_DEFAULTS, steps=100000)``.
"""

from __future__ import annotations

import sys

from tfp_realnvp.cli.preset import run_preset

PAPER_DEFAULTS = {
    "data": "celeb_a",
    "test_split": "test",
    "num_scales": 5,
    "num_filters": 32,
    "num_blocks": 2,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "flip": True,
    "output_dir": "celeba_output",
}


def main(argv: list[str]) -> int:
    """Trains with the paper's settings, as overridden by the flags in ``argv``; returns the exit status."""
    return run_preset(argv, defaults=PAPER_DEFAULTS, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
