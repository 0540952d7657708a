"""What a finished training run reports: test bits/dim, the accuracy of ``classify``, its steps."""

from __future__ import annotations

import numpy as np

from tfp_realnvp.model.baselines import independent_pixel_bits_per_dim
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.checkpoints import model_step
from tfp_realnvp.training.distributed import Topology
from tfp_realnvp.training.inputs import TrainingData
from tfp_realnvp.training.steps import StepPlan

#: Test images on which a conditional run and ``evaluate`` measure ``classify``.
CLASSIFY_IMAGES = 2000
#: Images per batch when a finished run measures its test bits/dim.
EVALUATION_BATCH_SIZE = 256


def mean_bits_per_dim(
    model: RealNVP, test: np.ndarray, batch_size: int, labels: np.ndarray | None = None, *, samples: int = 1
) -> float:
    """Mean bits/dim of ``test`` (given ``labels``, for a class-conditional model), in
    inference mode; with ``samples=K`` the importance-weighted bound of ``K`` draws."""
    return float(np.mean(model.bits_per_dim(test, labels, samples=samples, batch_size=batch_size)))


def classify_accuracy(
    model: RealNVP, images: np.ndarray, labels: np.ndarray, limit: int = CLASSIFY_IMAGES
) -> tuple[float, int]:
    """Share of the first ``limit`` images whose most probable class (uniform prior) is their label."""
    images, labels = images[:limit], labels[:limit]
    predicted = model.classify(images).argmax(axis=1)
    return float(np.mean(predicted == labels)), int(len(images))


def _bound_wording(model: RealNVP) -> str:
    """What ``test_bits_per_dim`` bounds and how, in words, for the report."""
    if model.dequantization == "variational":
        return "-(log p(x + u) - log q(u | x)) / (D ln 2), one seeded draw u ~ q(u | x) per image (variational)"
    return "-log p(x + u) / (D ln 2), one seeded draw u ~ U[0, 1)^D per image (uniform)"


def class_grid_labels(num_classes: int, columns: int) -> np.ndarray:
    """Labels of a grid with one row per class: ``columns`` samples of each."""
    return np.repeat(np.arange(num_classes, dtype=np.int32), columns)


def _history(histories: list) -> dict:
    """The last train bits/dim and the per-epoch ``loss`` and ``bits_per_dim`` of ``fit``'s histories."""
    train_bpd = [h.history["bits_per_dim"][-1] for h in histories if h.history.get("bits_per_dim")]
    return {
        "final_train_bits_per_dim": float(train_bpd[-1]) if train_bpd else None,
        # Per epoch of this invocation (a resumed run lists only the epochs it trained).
        "history": {
            key: [float(v) for h in histories for v in h.history.get(key, [])] for key in ("loss", "bits_per_dim")
        },
    }


def finished_report(
    model: RealNVP,
    *,
    data_name: str,
    data: TrainingData,
    plan: StepPlan,
    histories: list,
    resumed_from: int | None,
    train_seconds: float,
    stopped_by_time_budget: bool,
    model_path: str,
    checkpoint_path: str | None,
    topology: Topology,
    batch_size: int,
) -> dict:
    """``report.json`` of a run that trained to its end (or to its time budget).

    Measures the test bits/dim of ``model`` and, for a conditional model, the accuracy of
    ``classify`` on the test images.
    """
    test_bpd = mean_bits_per_dim(model, data.test_images, batch_size=EVALUATION_BATCH_SIZE, labels=data.test_labels)
    classify = classify_accuracy(model, data.test_images, data.test_labels) if data.num_classes else None
    report = {
        "status": "stopped_by_time_budget" if stopped_by_time_budget else "finished",
        "data": str(data_name),
        "image_shape": list(model.image_shape),
        "train_images": int(len(data.train_images)),
        "test_images": int(len(data.test_images)),
        "steps": model_step(model),
        "requested_steps": plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "resumed_from_step": resumed_from,
        "train_seconds": round(train_seconds, 1),
        "stopped_by_time_budget": bool(stopped_by_time_budget),
        **_history(histories),
        "test_bits_per_dim": test_bpd,
        "test_bits_per_dim_bound": _bound_wording(model),
        "independent_pixel_test_bits_per_dim": independent_pixel_bits_per_dim(data.train_images, data.test_images),
        "model": str(model_path),
        "checkpoint": checkpoint_path,
        "config": model.get_config(),
    }
    if classify is not None:
        report["num_classes"] = data.num_classes
        report["test_bits_per_dim_given"] = "-log p(x | y) / (D ln 2) with the true labels"
        report["test_classify_accuracy"] = classify[0]
        report["test_classify_images"] = classify[1]
    if topology.data_parallel:
        report["data_parallel"] = {
            "processes": topology.process_count,
            "devices": topology.num_devices,
            "global_batch_size": batch_size,
        }
    return report
