"""How the bits/dim bound of trained models tightens with the number of importance samples.

    python -m benchmarks.bounds --model uniform=shipped_uniform/model.keras \\
        --model variational=shipped_variational/model.keras --data shipped --output bounds.json

For each saved model and each ``K`` of ``--samples`` this reports the mean over the test
images of the importance-weighted bound ``-log (1/K) sum_k p(x + u_k) / q(u_k | x)`` in
bits/dim (``q = 1`` for a uniform-dequantization model), the quantity of
``model.bits_per_dim(images, samples=K)``. The draws are seeded per image and nested:
the ``K`` draws are the first ``K`` of the largest ``K``, so the largest ``K`` is
evaluated once (``model.importance_log_weights``) and every smaller bound is read from
it; one smaller ``K`` is checked against ``bits_per_dim(samples=K)`` on a few images. The
JSON also holds each model's training report (steps, seconds) when a ``report.json``
lies next to it, the evaluation seconds, the machine and the library versions.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from benchmarks.common import machine_description, positive_int, positive_int_list, runtime_versions, utc_now
from tfp_realnvp.data import load_images
from tfp_realnvp.model.files import load_realnvp
from tfp_realnvp.model.inference import log_mean_exp
from tfp_realnvp.training.steps import write_json

#: Importance samples of the table (``--samples``).
DEFAULT_SAMPLES = (1, 4, 16, 64, 256)
#: Facts copied from a model's training report.
REPORT_KEYS = ("steps", "train_seconds", "stopped_by_time_budget", "test_bits_per_dim", "test_images", "data")


def named_model(text: str) -> tuple[str, str]:
    """``NAME=PATH`` of ``--model``."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--model takes NAME=PATH; received {text!r}.")
    return name, path


def training_facts(model_path: str) -> dict | None:
    """The ``REPORT_KEYS`` of the ``report.json`` next to ``model_path`` (``None`` if there is none)."""
    report = pathlib.Path(model_path).with_name("report.json")
    if not report.is_file():
        return None
    facts = json.loads(report.read_text())
    return {key: facts.get(key) for key in REPORT_KEYS}


def bound_table(model, images: np.ndarray, samples: list[int], batch_size: int) -> tuple[dict, float]:
    """Mean bits/dim bound for every ``K`` in ``samples`` and the seconds the draws took."""
    started = time.perf_counter()
    log_w = model.importance_log_weights(images, samples=max(samples), batch_size=batch_size)
    seconds = time.perf_counter() - started
    table = {str(k): float(np.mean(model.to_bits_per_dim(log_mean_exp(log_w[:k])))) for k in samples}
    check_k = min(samples, key=lambda k: (k == 1, k))
    direct = model.bits_per_dim(images[:8], samples=check_k, batch_size=batch_size)
    nested = model.to_bits_per_dim(log_mean_exp(log_w[:check_k, :8]))
    if not np.allclose(direct, nested, rtol=1e-5, atol=1e-4):
        raise RuntimeError(f"bits_per_dim(samples={check_k}) disagrees with the nested draws: {direct} vs {nested}")
    return table, seconds


def run(args) -> dict:
    test = load_images(args.data, split=args.split)
    if args.max_images:
        test = test[: args.max_images]
    samples = sorted(set(args.samples))
    results = {}
    for name, path in args.model:
        model = load_realnvp(path)
        table, seconds = bound_table(model, test, samples, args.batch_size)
        results[name] = {
            "model": path,
            "dequantization": model.dequantization,
            "bits_per_dim": table,
            "evaluation_seconds": round(seconds, 1),
            "training": training_facts(path),
        }
        print(f"{name}: " + ", ".join(f"K={k}: {v:.4f}" for k, v in table.items()), flush=True)
    result = {
        "what": "mean over the test images of -log (1/K) sum_k p(x+u_k)/q(u_k|x) / (D ln 2), seeded per image",
        "data": args.data,
        "split": args.split,
        "images": int(len(test)),
        "samples": samples,
        "models": results,
        "machine": machine_description(),
        "versions": runtime_versions(),
        "date": utc_now(),
        "command": " ".join(["python", "-m", "benchmarks.bounds", *(args.argv or sys.argv[1:])]),
    }
    if args.output:
        write_json(args.output, result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=named_model, action="append", required=True, help="NAME=PATH of a saved .keras model."
    )
    parser.add_argument("--data", default="shipped", help="'shipped' or an IDX directory (default: shipped).")
    parser.add_argument("--split", default="test", choices=["train", "test"], help="split (default: test).")
    parser.add_argument("--max-images", type=positive_int, default=None, help="use the first N images of the split.")
    parser.add_argument(
        "--samples",
        type=positive_int_list,
        default=list(DEFAULT_SAMPLES),
        help="importance samples K, comma-separated (default: 1,4,16,64,256).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=256, help="flow evaluations per call.")
    parser.add_argument("--output", default=None, help="write the JSON here.")
    args = parser.parse_args(argv)
    args.argv = argv
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
