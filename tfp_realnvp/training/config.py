"""The configuration of a training run: data, model, steps, optimisation, files."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from tfp_realnvp.internal.arguments import check_int, check_number
from tfp_realnvp.training.inputs import DataSource

#: The Keras dtype policies a run can train under.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
#: The dequantizations a run can train with (``RealNVP``'s ``dequantization``).
DEQUANTIZATION_CHOICES = ("uniform", "variational")
#: The values of ``jit_compile``: ``"auto"`` lets Keras decide.
JIT_COMPILE_CHOICES = ("auto", True, False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingConfig(DataSource):
    """Everything a training run needs to know, besides the data source it extends.

    The fields of :class:`~tfp_realnvp.training.inputs.DataSource` (``data``,
    ``data_dir``, ``pad_to``, ``image_size``, ``max_images``, ``stream``, ``preset``)
    say where the images come from; the others:

    Attributes:
        test_split: the split of the final bits/dim report.
        batch_size: images per batch (the global batch of a data-parallel job).
        num_scales: scales of the multi-scale flow.
        num_filters: conditioner width at the first scale (doubles per scale).
        num_blocks: residual blocks per conditioner.
        batch_norm: batch normalization between the couplings.
        batch_norm_momentum: decay of the batch-norm moving averages (``None``: the model's).
        conditioner_batch_norm: batch normalization inside the conditioners (``None``: the model's).
        recompute: ``"none"``, ``"conditioner"`` or ``"invertible"`` (see ``RealNVP``).
        dequantization: ``"uniform"`` or ``"variational"`` (a learned ``q(u | x)``; see ``RealNVP``).
        conditional: train a class-conditional model ``p(x | y)`` on the labels of the data.
        epochs: training epochs (not together with ``steps``; default ``default_epochs``).
        steps: total training steps of the run, exactly (the data repeats as needed).
        steps_per_epoch: batches per epoch (default: one pass over the data).
        default_epochs: epochs when neither ``epochs`` nor ``steps`` is given.
        time_budget: stop after this many seconds of training (``None`` or 0: no limit).
        learning_rate: Adam's learning rate (a resumed run uses this value).
        flip: random horizontal flips (TensorFlow backend, or images held in memory).
        precision: the Keras dtype policy, one of :data:`PRECISIONS`.
        jit_compile: XLA-compile the train step: ``"auto"``, ``True`` or ``False``.
        temperature: sampling temperature of the sample grids.
        seed: random seed of the data order, the noise and the samples.
        output_dir: where the model, the sample grids, ``report.json`` and ``checkpoints/`` go.
        tensorboard: a TensorBoard log directory, or ``None``.
        fit_ood: at the end, fit the out-of-distribution statistics
            (``RealNVP.fit_ood``) on up to this many training images, so that the saved
            model (and its SavedModel's ``ood_score`` signature) scores novel inputs;
            0: not (``ood --save-model`` can add them later). Needs the images in
            memory (not ``stream``).
        verbose: Keras progress output (0, 1 or 2; ``None``: 1 on a terminal, else 2).
        resume: resume from the newest checkpoint in ``output_dir`` and fail if there is
            none (without it a checkpoint is resumed when present).
        fresh: start from scratch: delete the checkpoints in ``output_dir`` and replace
            its model and report when done.
        checkpoint_every: also checkpoint after the batch during which this many seconds
            have passed since the last checkpoint (checkpoints follow every epoch too).
        keep_checkpoints: how many of the newest checkpoints to keep.
        resume_command: the shell command that resumes this run, named when a signal
            stops it (``None``: the message says to run ``train`` again).
        log: where progress messages go (default ``print``).
    """

    test_split: str = "test"
    batch_size: int = 64
    num_scales: int = 2
    num_filters: int = 64
    num_blocks: int = 8
    batch_norm: bool = True
    batch_norm_momentum: float | None = None
    conditioner_batch_norm: bool | None = None
    recompute: str = "none"
    dequantization: str = "uniform"
    conditional: bool = False
    epochs: int | None = None
    steps: int | None = None
    steps_per_epoch: int | None = None
    default_epochs: int = 10
    time_budget: float | None = None
    learning_rate: float = 1e-3
    flip: bool = False
    precision: str = "float32"
    jit_compile: str | bool = "auto"
    temperature: float = 0.7
    seed: int = 0
    output_dir: str = "realnvp_output"
    tensorboard: str | None = None
    fit_ood: int = 0
    verbose: int | None = None
    resume: bool = False
    fresh: bool = False
    checkpoint_every: float = 600.0
    keep_checkpoints: int = 3
    resume_command: str | None = None
    log: Callable[[str], None] = print

    def __post_init__(self):
        check_int(self.batch_size, name="batch_size")
        for name in ("epochs", "steps", "steps_per_epoch", "max_images", "pad_to", "image_size"):
            check_int(getattr(self, name), name=name, allow_none=True)
        check_int(self.default_epochs, name="default_epochs")
        check_int(self.keep_checkpoints, name="keep_checkpoints")
        check_int(self.fit_ood, name="fit_ood", low=0)
        if self.fit_ood == 1:
            raise ValueError("fit_ood needs at least 2 images (or 0: not fitted); received 1.")
        if self.fit_ood and self.stream:
            raise ValueError(
                f"fit_ood={self.fit_ood} needs the training images in memory; stream=True reads them from disk. "
                "Fit the statistics afterwards on a sample: python -m tfp_realnvp ood --save-model."
            )
        check_number(self.checkpoint_every, name="checkpoint_every", low=0)
        check_number(self.learning_rate, name="learning_rate", low=0)
        if self.time_budget:
            check_number(self.time_budget, name="time_budget", low=0)
        if self.dequantization not in DEQUANTIZATION_CHOICES:
            raise ValueError(
                f"dequantization must be one of {list(DEQUANTIZATION_CHOICES)}; received {self.dequantization!r}."
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}; received {self.precision!r}.")
        if not any(self.jit_compile is choice or self.jit_compile == choice for choice in JIT_COMPILE_CHOICES):
            raise ValueError(f"jit_compile must be 'auto', True or False; received {self.jit_compile!r}.")
        if self.verbose not in (None, 0, 1, 2):
            raise ValueError(f"verbose must be None, 0, 1 or 2; received {self.verbose!r}.")
        if self.resume and self.fresh:
            raise ValueError("resume=True resumes a checkpoint that fresh=True would delete; give one of them.")

    @property
    def verbosity(self) -> int:
        """``verbose``, or by default a progress bar on a terminal and one line per epoch otherwise."""
        if self.verbose is not None:
            return int(self.verbose)
        return 1 if sys.stdout.isatty() else 2
