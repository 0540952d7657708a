"""The runs of ``batch_norm_modes.py`` and their report: which model each run trains, which
moving-average rules (candidates) it measures, and the JSON-ready result with every curve
and, per candidate, the gap between inference mode and the re-estimated statistics.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from benchmarks.batch_norm_training import TEST_BATCH, Run
from benchmarks.common import machine_description, runtime_versions
from tfp_realnvp.data import load_images

#: Gap (bits/dim) between inference mode and the re-estimation that counts as "matching".
THRESHOLD = 0.02

RUNS = ("shared", "lag", "conditioner_batch_norm", "default")

#: Candidates tracked as shadow averages on the ``shared`` run.
SHADOW_CANDIDATES = (
    {
        "name": "momentum_0.99_no_warm_start",
        "label": "0.99, no warm start (old default)",
        "momentum": 0.99,
        "warm_start": False,
    },
    {"name": "momentum_0.99_warm_start", "label": "0.99, warm start", "momentum": 0.99, "warm_start": True},
    {"name": "momentum_0.95_warm_start", "label": "0.95, warm start", "momentum": 0.95, "warm_start": True},
    {"name": "momentum_0.9_warm_start", "label": "0.9, warm start (default)", "momentum": 0.9, "warm_start": True},
    {
        "name": "momentum_0.9_warm_start_epoch_end_reestimation",
        "label": "0.9, warm start + re-estimation at epoch end",
        "momentum": 0.9,
        "warm_start": True,
        "epoch_end_reestimation": True,
    },
)


# Environment ---------------------------------------------------------------------------
def _versions() -> dict:
    """The run's library versions, with TensorFlow, TensorFlow Probability and NumPy."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    return {
        **runtime_versions(),
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "numpy": np.__version__,
    }


def summarize(
    candidate: dict, steps: list[int], inference: list[float], reference: list[float], total_steps: int
) -> dict:
    """``candidate`` with its curve, its gaps to ``reference``, the final values and whether
    the gap stays within ``THRESHOLD`` (at the end, over the last half, and from which step)."""
    gaps = [a - b for a, b in zip(inference, reference)]
    last_half = [g for s, g in zip(steps, gaps) if s >= total_steps / 2]
    within_from = None
    for s, g in reversed(list(zip(steps, gaps))):
        if abs(g) > THRESHOLD:
            break
        within_from = s
    return dict(
        candidate,
        inference_bits_per_dim=inference,
        gap=gaps,
        final_inference_bits_per_dim=inference[-1],
        final_reference_bits_per_dim=reference[-1],
        final_gap=gaps[-1],
        max_gap_last_half=max(last_half, key=abs) if last_half else None,
        within_threshold_at_end=abs(gaps[-1]) <= THRESHOLD,
        within_threshold_over_last_half=bool(last_half) and all(abs(g) <= THRESHOLD for g in last_half),
        within_threshold_from_step=within_from,
    )


def load_data(args) -> tuple[np.ndarray, np.ndarray]:
    """The train and test images (``--data``), cut to ``--max-train`` and ``--max-test``."""
    train = load_images(args.data, split="train")
    test = load_images(args.data, split="test")
    if args.max_train:
        train = train[: args.max_train]
    if args.max_test:
        test = test[: args.max_test]
    return train, test


def run_plans(args, config: dict) -> dict:
    """``{run: (model kwargs, candidates, shadow)}`` for every run of ``RUNS``."""
    # Every run keeps the averages of its own rule: fit's epoch-end re-estimation is off,
    # and the candidate that re-estimates at epoch ends does so on its shadow copy.
    base = dict(config, seed=args.seed, refresh_batches=0, conditioner_batch_norm=False)
    lag = {
        "name": f"momentum_0.9_warm_start_lag_{args.lag:g}",
        "label": f"0.9, warm start, lag {args.lag:g}",
        "momentum": 0.9,
        "warm_start": True,
        "lag": args.lag,
    }
    conditioner = {
        "name": "momentum_0.9_warm_start_conditioner_batch_norm",
        "label": "0.9, warm start, conditioner batch norm",
        "momentum": 0.9,
        "warm_start": True,
        "conditioner_batch_norm": True,
    }
    defaults = {
        "name": "defaults",
        "label": "defaults: 0.9, conditioner batch norm, re-estimation by fit",
        "momentum": 0.9,
        "warm_start": True,
        "conditioner_batch_norm": True,
        "epoch_end_reestimation_by_fit": True,
    }
    return {
        "shared": (dict(base, batch_norm_momentum=0.0, batch_norm_lag=0.0), [dict(c) for c in SHADOW_CANDIDATES], True),
        "lag": (dict(base, batch_norm_momentum=0.9, batch_norm_lag=args.lag), [lag], False),
        "conditioner_batch_norm": (
            dict(base, batch_norm_momentum=0.9, conditioner_batch_norm=True),
            [conditioner],
            False,
        ),
        # RealNVP as shipped: conditioner batch norm and fit's epoch-end re-estimation on.
        "default": (dict(config, seed=args.seed), [defaults], False),
    }


def train_runs(args, train, test, config: dict) -> tuple[dict, list[dict]]:
    """Trains every run of ``--runs``; returns ``{run: its record}`` and the summarised candidates."""
    plans = run_plans(args, config)
    runs, candidates = {}, []
    for name in args.runs:
        model_kwargs, run_candidates, shadow = plans[name]
        for c in run_candidates:
            c.setdefault("lag", 0.0)
            c.setdefault("conditioner_batch_norm", False)
            c.setdefault("epoch_end_reestimation", False)
            c["run"] = name
        trainer = Run(
            name, args=args, train=train, test=test, model_kwargs=model_kwargs, candidates=run_candidates, shadow=shadow
        )
        runs[name] = trainer.fit()
        for c in run_candidates:
            candidates.append(summarize(c, trainer.steps, trainer.curves[c["name"]], trainer.reference, args.steps))
        del trainer
        keras.backend.clear_session()
    return runs, candidates


def conditioner_batch_norm_comparison(args, runs: dict, candidates: list[dict]) -> dict | None:
    """Weight-norm-only conditioners against conditioner batch norm at momentum 0.9, or
    ``None`` unless both runs were trained."""
    by_name = {c["name"]: c for c in candidates}
    plain, with_bn = (
        by_name.get("momentum_0.9_warm_start"),
        by_name.get("momentum_0.9_warm_start_conditioner_batch_norm"),
    )
    if not (plain and with_bn):
        return None
    return {
        "steps": args.steps,
        "weight_norm_only": {
            "final_inference_bits_per_dim": plain["final_inference_bits_per_dim"],
            "final_reference_bits_per_dim": plain["final_reference_bits_per_dim"],
            "train_seconds": runs["shared"]["train_seconds"],
            "seconds_per_step": runs["shared"]["seconds_per_step"],
        },
        "conditioner_batch_norm": {
            "final_inference_bits_per_dim": with_bn["final_inference_bits_per_dim"],
            "final_reference_bits_per_dim": with_bn["final_reference_bits_per_dim"],
            "train_seconds": runs["conditioner_batch_norm"]["train_seconds"],
            "seconds_per_step": runs["conditioner_batch_norm"]["seconds_per_step"],
        },
        "inference_difference": with_bn["final_inference_bits_per_dim"] - plain["final_inference_bits_per_dim"],
    }


def method(args) -> dict:
    """How each number of the report is measured."""
    return {
        "inference": "model.bits_per_dim(test).mean() with the candidate's moving averages",
        "reference": (
            f"every batch-norm average (flow and conditioner) set to the mean of the batch statistics of "
            f"{args.reestimate_batches} fixed training batches of {args.reestimate_batch_size} images, then inference-mode test bits/dim"
        ),
        "batch_mode": f"training-mode normalisation with the statistics of each test batch of {TEST_BATCH} images (same dequantization noise as inference)",
        "shared_run": (
            "without lag the weights do not depend on the momentum: trained once with momentum 0, whose averages hold each "
            "step's batch statistics after the step; every candidate's averages are shadow copies updated by the same rule"
        ),
        "epoch_end_reestimation": "at every epoch end the averages are replaced by a re-estimation on fresh random training batches",
        "gap": "inference minus reference bits/dim; matching means |gap| <= threshold",
        "threshold": THRESHOLD,
    }


def settings(args, train, test, config: dict) -> dict:
    """The data, model, optimizer and schedule of the runs."""
    return {
        "data": args.data,
        "train_images": int(len(train)),
        "test_images": int(len(test)),
        "image_shape": list(train.shape[1:]),
        "model": config,
        "optimizer": "Adam, global gradient-norm clipping 1.0 (RealNVP.compile default)",
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "steps_per_epoch": args.steps_per_epoch,
        "eval_every": args.eval_every,
        "seed": args.seed,
        "lag": args.lag,
        "reestimate_batches": args.reestimate_batches,
        "reestimate_batch_size": args.reestimate_batch_size,
        "runs": list(args.runs),
    }


def run(args) -> dict:
    """Trains the runs of ``--runs`` and returns the report (see ``batch_norm_modes.py``).

    ``args.steps_per_epoch`` of ``None`` becomes one pass over the training images.

    Raises:
        SystemExit: on a backend other than TensorFlow.
    """
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(
            f"batch_norm_modes.py needs the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}."
        )
    started = time.perf_counter()
    train, test = load_data(args)
    if args.steps_per_epoch is None:
        args.steps_per_epoch = max(1, len(train) // args.batch_size)
    config = {"num_scales": args.num_scales, "num_filters": args.num_filters, "num_blocks": args.num_blocks}
    runs, candidates = train_runs(args, train, test, config)
    return {
        "benchmark": "batch_norm_modes",
        "description": (
            "Inference-mode test bits/dim right after fit for moving-average rules of batch norm, against the same "
            "weights with re-estimated statistics (reference) and with per-batch statistics (batch mode)."
        ),
        "method": method(args),
        "settings": settings(args, train, test, config),
        "runs": runs,
        "candidates": candidates,
        "conditioner_batch_norm_comparison": conditioner_batch_norm_comparison(args, runs, candidates),
        "matching_at_end": [c["name"] for c in candidates if c["within_threshold_at_end"]],
        "matching_over_last_half": [c["name"] for c in candidates if c["within_threshold_over_last_half"]],
        "machine": machine_description(),
        "versions": _versions(),
        "command": " ".join(["benchmarks/batch_norm_modes.py"] + list(args.argv)),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def format_table(result: dict) -> str:
    """Per candidate: final inference and reference bits/dim, the gap and the largest gap over the last half."""
    lines = ["candidate | final inference | final reference | gap | max |gap| last half"]
    for c in result["candidates"]:
        lines.append(
            f"{c['label']} | {c['final_inference_bits_per_dim']:.4f} | {c['final_reference_bits_per_dim']:.4f} | "
            f"{c['final_gap']:+.4f} | {c['max_gap_last_half']:+.4f}"
        )
    return "\n".join(lines)
