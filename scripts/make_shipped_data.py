"""Regenerates tfp_realnvp/data_files/fashion_mnist_test.npz from Debian's package.

    apt-get install dataset-fashion-mnist
    python scripts/make_shipped_data.py [--source-dir DIR] [--output FILE]

Reads the Fashion-MNIST test split (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz),
checks the SHA-256 of both files against Debian's package (version
0.0~git20200523.55506a9-1; the .gz bytes there do not match the MD5 sums listed in
Zalando's README, so those cannot serve as the reference), checks that every class
has 1,000 images, and writes ``images`` (uint8 [10000, 28, 28, 1]) and ``labels``
(uint8 [10000]) with ``np.savez_compressed`` (reproducible: the zip entries carry a
fixed timestamp).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfp_realnvp.data import SHIPPED_FILE, read_idx  # noqa: E402 (needs the repository root on sys.path: the script runs from a source checkout)

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUTPUT = REPO / "tfp_realnvp" / "data_files" / SHIPPED_FILE
EXPECTED_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


def sha256(path: Path) -> str:
    """Returns the hex SHA-256 digest of the file at ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Checks the source files and writes the ``.npz``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--skip-checksum", action="store_true", help="accept files whose SHA-256 differs")
    args = parser.parse_args(argv)

    for name, expected in EXPECTED_SHA256.items():
        path = args.source_dir / name
        if not path.is_file():
            parser.error(f"{path} not found; install Debian's dataset-fashion-mnist package")
        digest = sha256(path)
        print(f"{name}: sha256 {digest}")
        if digest != expected and not args.skip_checksum:
            parser.error(f"{path} has sha256 {digest}, expected {expected}")

    images = read_idx(args.source_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(args.source_dir / "t10k-labels-idx1-ubyte.gz")
    if images.shape != (10000, 28, 28) or images.dtype != np.uint8:
        parser.error(f"unexpected images: {images.dtype} {images.shape}")
    if labels.shape != (10000,) or np.bincount(labels, minlength=10).tolist() != [1000] * 10:
        parser.error(f"unexpected labels: {labels.dtype} {labels.shape}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, images=images[..., np.newaxis], labels=labels.astype(np.uint8))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes), sha256 {sha256(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
