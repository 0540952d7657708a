"""A training run: data order, checkpoints and resume, signals, divergence, distribution.

Modules: ``steps`` (step plans, stopping callbacks, the JSON report), ``checkpoints``
(atomic checkpoints and resume), ``interrupts`` (SIGINT/SIGTERM), ``distributed`` (the
topology of a multi-process job), ``batch_stream`` (the resumable batch order) and
``callbacks`` (sample grids).
"""
