"""What a training run keeps between invocations: its output directory, its settings,
the checkpoint it resumes from, and the report of a run that diverged."""

from __future__ import annotations

import json
import math
import pathlib

import keras
import numpy as np

from tfp_realnvp.model.realnvp import RESUME_SETTING_KEYS, RealNVP
from tfp_realnvp.training.checkpoints import (
    Checkpoint,
    CheckpointManager,
    CheckpointMismatchError,
    TrainingDiverged,
    compare_settings,
    model_step,
)
from tfp_realnvp.training.config import TrainingConfig
from tfp_realnvp.training.distributed import Topology, broadcast_from_chief
from tfp_realnvp.training.run_files import MODEL_FILENAME, REPORT_FILENAME

_START_FRESH, _START_RESUME, _START_REFUSED = 0, 1, 2


def run_settings(config: TrainingConfig, model: RealNVP, train_images: np.ndarray) -> dict:
    """What must match for a checkpoint to be resumed by this run."""
    model_config = model.get_config()
    return {
        "data": str(config.data),
        "image_size": config.image_size,
        "pad_to": config.pad_to,
        "max_images": config.max_images,
        "train_images": int(len(train_images)),
        "batch_size": config.batch_size,
        "seed": config.seed,
        "flip": bool(config.flip),
        "precision": config.precision,
        **{key: model_config[key] for key in RESUME_SETTING_KEYS},
        # Only a conditional run records its classes, so checkpoints of earlier versions still resume.
        **({"num_classes": model_config["num_classes"]} if model_config.get("num_classes") is not None else {}),
    }


def _report_status(path: pathlib.Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def claim_output_dir(config: TrainingConfig, manager: CheckpointManager) -> bool:
    """Decides between a fresh start and resuming; refuses to replace a finished model.

    Returns:
        Whether to resume from a checkpoint.

    Raises:
        ValueError: for ``resume=True`` without a checkpoint.
        FileExistsError: when ``output_dir`` holds a finished model, no checkpoint and
            ``fresh`` is not set.
    """
    out = pathlib.Path(config.output_dir)
    if config.fresh:
        removed = manager.discard_all()
        if removed:
            config.log(f"fresh=True: deleted {removed} checkpoint(s) in {manager.directory}")
        return False
    if manager.latest() is not None:
        return True
    if config.resume:
        raise ValueError(f"resume=True: there is no checkpoint to resume from in {str(manager.directory)!r}.")
    existing = [out / name for name in (MODEL_FILENAME, REPORT_FILENAME) if (out / name).exists()]
    if existing == [out / REPORT_FILENAME] and _report_status(existing[0]) == "diverged":
        existing = []  # the report of a run that left no model
    if existing:
        raise FileExistsError(
            f"output_dir {str(out)!r} already holds {existing[0].name} from an earlier run and no checkpoint "
            "to resume; pass fresh=True to train a new model that replaces it, or choose another output_dir."
        )
    return False


def resume_from_checkpoint(
    config: TrainingConfig, model: RealNVP, manager: CheckpointManager, settings: dict
) -> tuple[int, Checkpoint]:
    """Restores the newest checkpoint into ``model`` after checking its settings match.

    Returns:
        The step it resumes at and the checkpoint.

    Raises:
        CheckpointMismatchError: when the checkpoint was written with other settings.
    """
    latest = manager.latest()
    saved = latest.read_state().get("settings", {})
    try:
        compare_settings(saved, settings, checkpoint=latest.path)
    except CheckpointMismatchError as error:
        raise CheckpointMismatchError(
            f"{error} Run with the settings of that run to resume it, or pass fresh=True to start over "
            "(deletes its checkpoints)."
        ) from None
    checkpoint, _ = manager.restore_latest(model)
    step = model_step(model)
    config.log(f"resuming from {checkpoint.path} (step {step})")
    saved_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    if not math.isclose(saved_rate, config.learning_rate, rel_tol=1e-6):
        model.optimizer.learning_rate = config.learning_rate
        config.log(f"learning_rate={config.learning_rate:g} replaces the checkpoint's {saved_rate:g}")
    return step, checkpoint


def diverged_report(data: str, error: TrainingDiverged, resumed_from: int | None) -> dict:
    """``report.json`` of a run on ``data`` that diverged: where, and the last good checkpoint."""
    checkpoint = error.checkpoint
    return {
        "status": "diverged",
        "data": str(data),
        "diverged_at_step": error.step,
        "message": str(error),
        "last_good_checkpoint": None if checkpoint is None else str(checkpoint.path),
        "last_good_step": None if checkpoint is None else checkpoint.step,
        "resumed_from_step": resumed_from,
        "model": None,
    }


def agree_on_start(config: TrainingConfig, manager: CheckpointManager, topology: Topology) -> bool:
    """Process 0 claims ``output_dir`` and tells the others whether to resume.

    Returns:
        Whether to resume from the newest checkpoint.
    """
    if topology.is_chief:
        try:
            resume = claim_output_dir(config, manager)
            manager.remove_leftovers()
        except BaseException:
            broadcast_from_chief(topology, _START_REFUSED)
            raise
        broadcast_from_chief(topology, _START_RESUME if resume else _START_FRESH)
        return resume
    decision = broadcast_from_chief(topology, _START_REFUSED)
    if decision == _START_REFUSED:
        raise ValueError("process 0 of the job refused to start (its error says why); nothing was trained.")
    return decision == _START_RESUME
