"""A training run: data order, checkpoints and resume, signals, divergence, distribution.

:func:`train` runs a whole training (what ``python -m tfp_realnvp train`` does) from a
:class:`TrainingConfig` or its fields as keywords, and returns its report.

Modules: ``run`` (:func:`train`), ``config`` (:class:`TrainingConfig`), ``inputs`` (the
images of a run: in memory, streamed or tfds), ``run_state`` (the output directory, the
settings a checkpoint must match, resuming), ``run_files`` (the names of the files of a
run), ``report`` (test bits/dim and the report), ``steps`` (step plans, stopping
callbacks, the JSON report), ``checkpoints`` (atomic checkpoints and resume),
``interrupts`` (SIGINT/SIGTERM), ``distributed`` (the topology of a multi-process job),
``batch_stream`` (the resumable batch order) and ``callbacks`` (sample grids).
"""

from tfp_realnvp.training.config import TrainingConfig
from tfp_realnvp.training.inputs import DataSource
from tfp_realnvp.training.run import TrainingResult, run_training, train

__all__ = ["DataSource", "TrainingConfig", "TrainingResult", "run_training", "train"]
