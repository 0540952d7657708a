"""Decode throughput and peak memory of a streamed CelebA-style JPEG folder.

Generates ``img_align_celeba/*.jpg`` files of CelebA's size (178 wide, 218 high; smooth
gradients plus noise, so that the JPEGs are of realistic size) and reads them once with
``tfp_realnvp.data.stream_image_folder(..., preset="celeba")``: the paper's 148x148
center crop resized to 64x64, parallel decoding, bounded shuffle, batches of 64, the
same pipeline ``train --stream --preset celeba`` uses. Each folder size is measured in
a fresh interpreter, so its peak resident memory (``ru_maxrss``) is that of the stream
alone; memory that stays flat as the folder grows shows that nothing is held in RAM.

    KERAS_BACKEND=tensorflow python -m benchmarks.streaming --sizes 2000,20000 \\
        --output benchmarks/results/cpu/streaming.json

The JSON holds, per size, images/s over the whole pass (and after the first batch),
the peak memory, the settings, the machine and the versions.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO_ROOT, machine_description, positive_int, positive_int_list, runtime_versions


def write_folder(folder: Path, count: int, *, start: int = 0, seed: int = 0) -> float:
    """Writes JPEGs number ``start + 1 ... start + count`` (218 x 178 x 3) into ``folder``;
    returns their mean size in bytes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 200.0, 218)[:, None, None]
    cols = np.linspace(0.0, 55.0, 178)[None, :, None]
    total = 0
    for index in range(count):
        tint = rng.uniform(0.6, 1.0, size=(1, 1, 3))
        image = np.clip((rows + cols) * tint + rng.normal(0.0, 12.0, (218, 178, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{start + index + 1:06d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        total += path.stat().st_size
    return total / max(count, 1)


def measure(folder: str, batch_size: int) -> dict:
    """Reads ``folder`` once as the CLI's stream; runs in the interpreter being measured."""
    from tfp_realnvp.data import stream_image_folder

    started = time.perf_counter()
    dataset = stream_image_folder(folder, preset="celeba", batch_size=batch_size, seed=0)
    images, first = 0, None
    shape = None
    for batch in dataset:
        if first is None:
            first = time.perf_counter()
            shape = list(batch.shape[1:])
        images += int(batch.shape[0])
    ended = time.perf_counter()
    return {
        "images": images,
        "image_shape": shape,
        "seconds": round(ended - started, 2),
        "images_per_second": round(images / (ended - started), 1),
        "images_per_second_after_first_batch": round((images - batch_size) / max(ended - first, 1e-9), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=positive_int_list,
        default=[2000, 20000],
        help="comma-separated folder sizes (default: 2000,20000).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default: 64).")
    parser.add_argument("--output", default=None, help="JSON output path.")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args(argv)
    if args.measure:
        print("RESULT " + json.dumps(measure(args.measure, args.batch_size)), flush=True)
        return 0
    sizes = args.sizes
    if any(size < args.batch_size for size in sizes):
        raise ValueError(
            f"every size needs at least one batch of {args.batch_size}; received --sizes {','.join(map(str, sizes))}."
        )
    results = []
    with tempfile.TemporaryDirectory() as root:
        written = 0
        folder = Path(root) / "img_align_celeba"
        for size in sorted(sizes):
            # Grow one folder: the larger sizes hold the smaller ones' files too.
            started = time.perf_counter()
            mean_bytes = write_folder(folder, size - written, start=written, seed=size) if size > written else 0.0
            write_seconds = time.perf_counter() - started
            written = size
            process = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.streaming",
                    "--measure",
                    str(folder),
                    "--batch-size",
                    str(args.batch_size),
                ],
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
                check=False,
            )
            lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
            if process.returncode != 0 or not lines:
                raise RuntimeError(f"measuring {size} files failed:\n{process.stderr[-3000:]}")
            result = json.loads(lines[-1][len("RESULT ") :])
            result.update(files=size, write_seconds=round(write_seconds, 1), mean_jpeg_bytes=round(mean_bytes))
            results.append(result)
            print(
                f"{size:>7} files: {result['images_per_second']:.0f} images/s, peak {result['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
    report = {
        "benchmark": "streamed CelebA-style JPEG folder, preset celeba (148x148 center crop -> 64x64)",
        "results": results,
        "settings": {
            "batch_size": args.batch_size,
            "image_size_on_disk": [218, 178, 3],
            "pipeline": "tfp_realnvp.data.stream_image_folder",
        },
        "machine": machine_description(),
        "versions": runtime_versions(),
        "command": " ".join(["python", "benchmarks/streaming.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    if args.output:
        from tfp_realnvp.training.steps import write_json

        write_json(args.output, report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
