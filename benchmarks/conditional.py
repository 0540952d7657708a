"""Class-conditional against unconditional Real NVP at an equal training-time budget.

    python -m benchmarks.conditional --data shipped /usr/share/datasets/fashion-mnist --minutes 5 \
        --output benchmarks/results/cpu/conditional.json

Trains an unconditional ``RealNVP`` and a class-conditional one (``num_classes=K``, the
label embedding in every coupling and the per-class Gaussian base) of the same size,
each for ``--minutes`` of wall-clock time on the same machine, the same training images
and the same batch size and learning rate, and reports on the test split:

* ``unconditional.test_bits_per_dim``: ``-log p(x) / (D ln 2)``;
* ``conditional.test_bits_per_dim_given_label``: ``-log p(x | y) / (D ln 2)`` with the
  true label;
* ``conditional.test_bits_per_dim_marginal``: ``-log p(x) / (D ln 2)`` of the conditional
  model with ``p(x) = sum_k p(x | k) p(k)`` under the empirical training prior, the
  number comparable with the unconditional one (it is at most ``log2(K) / D`` above the
  conditional one);
* ``conditional.classify_accuracy``: the share of test images whose most probable
  class under ``classify`` (Bayes' rule, uniform prior) is the true label, with the
  accuracy of always answering the most frequent training class beside it.

Model sizes are those of ``benchmarks/bits_per_dim.py`` (``--config``). The JSON holds the
numbers, the settings, the machine and the library versions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time

import keras
import numpy as np

from benchmarks.bits_per_dim import CONFIGS
from benchmarks.common import machine_description, positive_int, runtime_versions
from tfp_realnvp.data import load_labelled_images
from tfp_realnvp.model.baselines import independent_pixel_bits_per_dim
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.steps import TimeBudget, write_json


def _train(model: RealNVP, images, labels, args) -> dict:
    model.compile(learning_rate=args.learning_rate)
    budget = TimeBudget(args.minutes * 60.0)
    started = time.perf_counter()
    if labels is None:
        model.fit(
            images,
            batch_size=args.batch_size,
            shuffle=True,
            epochs=args.max_epochs,
            callbacks=[budget],
            verbose=args.verbose,
        )
    else:
        model.fit(
            images,
            labels,
            batch_size=args.batch_size,
            shuffle=True,
            epochs=args.max_epochs,
            callbacks=[budget],
            verbose=args.verbose,
        )
    return {
        "steps": int(model.optimizer.iterations),
        "train_seconds": round(time.perf_counter() - started, 1),
        "stopped_by_time_budget": budget.stopped_early,
    }


def run_one(source: str, args) -> dict:
    """Both models trained and measured on one data source."""
    train, train_labels, class_names = load_labelled_images(source, split="train")
    test, test_labels, _ = load_labelled_images(source, split="test")
    if args.max_train:
        train, train_labels = train[: args.max_train], train_labels[: args.max_train]
    if args.max_test:
        test, test_labels = test[: args.max_test], test_labels[: args.max_test]
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    num_dims = int(np.prod(train.shape[1:]))
    prior = np.bincount(train_labels, minlength=num_classes) / len(train_labels)

    keras.utils.set_random_seed(args.seed)
    unconditional = RealNVP(train.shape[1:], seed=args.seed, **CONFIGS[args.config])
    run_u = _train(unconditional, train, None, args)
    run_u["test_bits_per_dim"] = float(np.mean(unconditional.bits_per_dim(test)))

    keras.utils.set_random_seed(args.seed)
    conditional = RealNVP(train.shape[1:], seed=args.seed, num_classes=num_classes, **CONFIGS[args.config])
    run_c = _train(conditional, train, train_labels, args)
    started = time.perf_counter()
    log_lik = conditional.class_log_likelihoods(test).astype(np.float64)
    run_c["classify_seconds"] = round(time.perf_counter() - started, 1)
    given = log_lik[np.arange(len(test)), test_labels]
    run_c["test_bits_per_dim_given_label"] = float(np.mean(-given / (num_dims * math.log(2.0))))
    a = log_lik + np.log(prior)[None, :]
    top = a.max(axis=1, keepdims=True)
    marginal = (top + np.log(np.exp(a - top).sum(axis=1, keepdims=True)))[:, 0]
    run_c["test_bits_per_dim_marginal"] = float(np.mean(-marginal / (num_dims * math.log(2.0))))
    predicted = conditional.classify(test).argmax(axis=1)
    run_c["classify_accuracy"] = float(np.mean(predicted == test_labels))
    run_c["per_class_accuracy"] = {
        class_names[k] if k < len(class_names) else str(k): float(np.mean(predicted[test_labels == k] == k))
        for k in range(num_classes)
        if np.any(test_labels == k)
    }

    result = {
        "config": args.config,
        "model": CONFIGS[args.config],
        "data": source
        if source == "shipped" or not os.path.isdir(source)
        else f"IDX directory {os.path.basename(os.path.normpath(source))}",
        "num_classes": num_classes,
        "train_images": int(len(train)),
        "test_images": int(len(test)),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "minutes_per_model": args.minutes,
        "seed": args.seed,
        "unconditional": run_u,
        "conditional": run_c,
        "majority_class_accuracy": float(np.mean(test_labels == int(np.argmax(prior)))),
        "independent_pixel_test_bits_per_dim": independent_pixel_bits_per_dim(train, test),
        "batch_norm_statistics": "inference mode, as fit left them (re-estimated at epoch ends)",
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def run(args) -> dict:
    """Runs every ``--data`` source in turn; the JSON lists one run per source."""
    default_dir = "/usr/share/datasets/fashion-mnist"
    sources = args.data or [default_dir if os.path.isdir(default_dir) else "shipped"]
    result = {
        "runs": [],
        "machine": {**machine_description(), "note": args.machine_note},
        "versions": runtime_versions(),
        "command": shlex.join(
            ["python", "-m", "benchmarks.conditional", *(sys.argv[1:] if args.argv is None else args.argv)]
        ),
    }
    for source in sources:
        result["runs"].append(run_one(source, args))
        if args.output:  # after every source, so a long run keeps what it measured
            write_json(args.output, result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo", help="model size (default: demo).")
    parser.add_argument(
        "--data",
        nargs="+",
        default=None,
        help="labelled sources, one run each: IDX directories, 'shipped', .npz files or class folders (default: Debian's Fashion-MNIST if installed, else shipped).",
    )
    parser.add_argument(
        "--minutes", type=float, default=5.0, help="training time budget per model in minutes (default: 5)."
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=1000,
        help="upper bound on epochs (the time budget usually stops first).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default: 64).")
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Adam learning rate (default: 3e-3, as the demo)."
    )
    parser.add_argument("--max-train", type=int, default=None, help="use only the first N training images.")
    parser.add_argument("--max-test", type=int, default=None, help="use only the first N test images.")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0).")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2], help="Keras progress output.")
    parser.add_argument(
        "--machine-note", default=None, help="free text about the machine recorded in the JSON (e.g. shared cores)."
    )
    parser.add_argument("--output", default=None, help="JSON output path.")
    args = parser.parse_args(argv)
    args.argv = argv
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
