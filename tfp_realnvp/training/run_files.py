"""The names of the files in the output directory of a training run.

::

    <output_dir>/model.keras             the trained model
    <output_dir>/report.json             what the run did (or where it diverged)
    <output_dir>/samples_epoch001.png    a sample grid after each epoch
    <output_dir>/checkpoints/step-<N>/   model.keras and state.json of step N
"""

from __future__ import annotations

#: The trained model, and the model inside each checkpoint.
MODEL_FILENAME = "model.keras"
#: The report of a run (``status``, bits/dim, steps, ...).
REPORT_FILENAME = "report.json"
#: The folder of the checkpoints, inside the output directory.
CHECKPOINT_DIRNAME = "checkpoints"
#: The facts about the run stored beside the model of a checkpoint.
STATE_FILENAME = "state.json"
#: The sample grid written after epoch ``epoch`` (counted from 1).
SAMPLE_GRID_PATTERN = "samples_epoch{epoch:03d}.png"


def sample_grid_name(epoch: int) -> str:
    """The file name of the sample grid after epoch ``epoch`` (counted from 1)."""
    return SAMPLE_GRID_PATTERN.format(epoch=int(epoch))
