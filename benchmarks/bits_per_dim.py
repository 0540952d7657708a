"""Trains a named Real NVP configuration on Fashion-MNIST for a fixed budget and
reports test bits/dim next to the independent-pixel baseline on the same split.

    python -m benchmarks.bits_per_dim --config demo --learning-rate 3e-3 --minutes 6 --output bpd.json
    python -m benchmarks.bits_per_dim --config demo --conditioner-batch-norm --output bpd.json
    python -m benchmarks.bits_per_dim --data /usr/share/datasets/fashion-mnist --config paper

Test bits/dim are what ``model.bits_per_dim`` gives right after ``fit``: batch norm in
inference mode with the moving averages as ``fit`` leaves them (it re-estimates them from
training batches at every epoch end and when training stops); nothing is done after ``fit``.

Data: ``--data`` is an IDX directory (Debian's ``dataset-fashion-mnist`` package puts the
files in ``/usr/share/datasets/fashion-mnist``) or ``shipped`` (the 10,000 images inside
the package, split 9,000 / 1,000). The JSON holds the measured numbers, the settings, the
machine and the library versions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

from benchmarks.common import machine_description, positive_int, runtime_versions
from tfp_realnvp.data import load_images
from tfp_realnvp.model.baselines import independent_pixel_bits_per_dim
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.steps import TimeBudget, as_fit_input, write_json

CONFIGS = {
    "tiny": {"num_scales": 2, "num_filters": 8, "num_blocks": 1},
    "demo": {"num_scales": 2, "num_filters": 16, "num_blocks": 1},
    "small": {"num_scales": 2, "num_filters": 32, "num_blocks": 2},
    "paper": {"num_scales": 2, "num_filters": 64, "num_blocks": 8},
}


def run(args) -> dict:
    keras.utils.set_random_seed(args.seed)
    default_dir = "/usr/share/datasets/fashion-mnist"
    source = args.data or (default_dir if os.path.isdir(default_dir) else "shipped")
    train = load_images(source, split="train")
    test = load_images(source, split="test")
    if args.max_train:
        train = train[: args.max_train]
    if args.max_test:
        test = test[: args.max_test]
    options = {} if args.conditioner_batch_norm is None else {"conditioner_batch_norm": args.conditioner_batch_norm}
    if args.batch_norm_momentum is not None:
        options["batch_norm_momentum"] = args.batch_norm_momentum
    model = RealNVP(train.shape[1:], seed=args.seed, **options, **CONFIGS[args.config])
    model.compile(learning_rate=args.learning_rate)
    x, kwargs = as_fit_input(train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    budget = TimeBudget(args.minutes * 60.0)
    started = time.perf_counter()
    model.fit(x, epochs=args.max_epochs, callbacks=[budget], verbose=args.verbose, **kwargs)
    seconds = time.perf_counter() - started
    test_bpd = float(np.mean(model.bits_per_dim(test)))
    result = {
        "config": args.config,
        "model": CONFIGS[args.config],
        "data": source,
        "train_images": int(len(train)),
        "test_images": int(len(test)),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "batch_norm_momentum": model.flow.config["batch_norm_momentum"],
        "batch_norm_lag": model.flow.config["batch_norm_lag"],
        "conditioner_batch_norm": model.flow.config["conditioner_batch_norm"],
        "batch_norm_statistics": f"inference mode, as fit left them (re-estimated from {model.refresh_batches} training batches at epoch ends)",
        "steps": int(model.optimizer.iterations),
        "train_seconds": round(seconds, 1),
        "stopped_by_time_budget": budget.stopped_early,
        "test_bits_per_dim": test_bpd,
        "independent_pixel_test_bits_per_dim": independent_pixel_bits_per_dim(train, test),
        "machine": machine_description(),
        "versions": runtime_versions(),
        "command": " ".join(sys.argv),
    }
    print(json.dumps(result, indent=2))
    if args.output:
        write_json(args.output, result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small", help="model size (default: small).")
    parser.add_argument(
        "--data",
        default=None,
        help="IDX directory or 'shipped' (default: Debian's Fashion-MNIST if installed, else shipped).",
    )
    parser.add_argument("--minutes", type=float, default=8.0, help="training time budget in minutes (default: 8).")
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=1000,
        help="upper bound on epochs (the time budget usually stops first).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default: 64).")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3).")
    parser.add_argument(
        "--batch-norm-momentum",
        type=float,
        default=None,
        help="decay of the batch-norm moving averages (default: the model's, 0.9).",
    )
    parser.add_argument(
        "--conditioner-batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch normalization inside the conditioner networks (default: the model's, on).",
    )
    parser.add_argument("--max-train", type=int, default=None, help="use only the first N training images.")
    parser.add_argument("--max-test", type=int, default=None, help="use only the first N test images.")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0).")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2], help="Keras progress output.")
    parser.add_argument("--output", default=None, help="JSON output path.")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
