"""Data-parallel training on every device of one host or of many (JAX backend).

Keras 3 carries the engine: ``keras.distribution.initialize()`` joins the processes of
a job (from ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES``
and ``KERAS_DISTRIBUTION_PROCESS_ID``), and ``keras.distribution.DataParallel``
replicates the weights on every device of the job and splits each global batch of
``B`` images along its first axis: device ``d`` of ``N`` computes on rows
``[d B / N, (d + 1) B / N)``, and process ``p`` of ``P`` feeds the rows
``[p B / P, (p + 1) B / P)`` that its own devices hold.

Everything inside the compiled train step sees the *global* batch: the loss, the
gradients and the batch-norm statistics (``mean`` and ``variance`` over the batch axis
are reductions over all devices, which XLA turns into collectives), and the training
dequantization noise, drawn for the global batch shape from one replicated seed. A job
on ``N`` devices therefore computes what one device computes on the same global batch,
up to the order of float summation.

Rules for the processes of one job, which the command line follows:

* every process runs the same command and the same compiled programs (a computation on
  the job's devices that one process skips would wait for it for ever);
* only process 0 (``Topology.is_chief``) writes files: checkpoints, sample grids, the
  model, the report and exports; the others compute the same values and discard them;
* process 0 decides whether to start fresh or resume and tells the others, so every
  process restores the same checkpoint;
* a stop (a signal, divergence) is agreed on at every step, so that all stop together.

On the TensorFlow backend, ``tf.distribute.MirroredStrategy`` covers the devices of one
host. Keras 3's ``fit`` does not train under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), so a ``TF_CONFIG`` that names several workers is refused with
an error that points to the JAX path.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from tfp_realnvp.internal.backend import backend_name
from tfp_realnvp.internal.job_environment import read_job_environment
from tfp_realnvp.internal.replicas import refuse_multi_worker_tensorflow


@dataclass(frozen=True)
class Topology:
    """Where this process stands in its job.

    Attributes:
        process_index: this process, ``0 <= p < process_count``.
        process_count: processes in the job.
        num_devices: devices of the whole job.
        num_local_devices: devices of this process.
    """

    process_index: int = 0
    process_count: int = 1
    num_devices: int = 1
    num_local_devices: int = 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the job's files (process 0)."""
        return self.process_index == 0

    @property
    def data_parallel(self) -> bool:
        """Whether batches are split over more than one device."""
        return self.num_devices > 1

    @property
    def multi_process(self) -> bool:
        return self.process_count > 1

    def check_batch_size(self, batch_size: int, *, name: str = "batch_size") -> None:
        """Refuses a global batch that the job's devices cannot share equally.

        Raises:
            ValueError: naming ``batch_size`` and the device count.
        """
        if int(batch_size) % self.num_devices:
            raise ValueError(
                f"{name}={batch_size} cannot be split equally over the job's {self.num_devices} devices; "
                f"choose a multiple of {self.num_devices}."
            )

    def local_rows(self, batch: np.ndarray) -> np.ndarray:
        """This process's rows of a global batch (what it feeds to ``fit``)."""
        if not self.multi_process:
            return batch
        if len(batch) % self.process_count:
            raise ValueError(
                f"a global batch of {len(batch)} images cannot be split over {self.process_count} processes."
            )
        share = len(batch) // self.process_count
        return batch[self.process_index * share : (self.process_index + 1) * share]

    def describe(self) -> str:
        if not self.data_parallel:
            return "one device"
        return (
            f"data parallel on {self.num_devices} devices in {self.process_count} process(es) "
            f"(this is process {self.process_index}, with {self.num_local_devices} devices)"
        )


def setup_data_parallel(environ: Mapping[str, str] | None = None) -> Topology:
    """Joins the job and turns data parallelism on, as the environment asks.

    On JAX: with Keras' job variables set for more than one process, joins the other
    processes (``keras.distribution.initialize()``; this must come before any JAX
    computation of the process); then, when the job has more than one device, sets
    ``keras.distribution.DataParallel`` over all of them as the global distribution
    (``auto_shard_dataset=False``: each process feeds its own rows). On TensorFlow:
    refuses a multi-worker ``TF_CONFIG`` and returns a one-process topology
    (``MirroredStrategy`` is chosen by the user's own scope).

    Returns:
        The :class:`Topology` of this process.

    Raises:
        ValueError: for an incomplete or contradictory set of job variables, or a
            multi-worker TensorFlow configuration.
    """
    job = read_job_environment(environ)
    if backend_name() != "jax":
        if job.process_count > 1:
            raise ValueError(
                f"multi-process training runs on the JAX backend; received {', '.join(sorted(job.variables))} with "
                f"KERAS_BACKEND={backend_name()!r}. Set KERAS_BACKEND=jax."
            )
        refuse_multi_worker_tensorflow(environ)
        return Topology()
    import jax

    if job.is_set:
        # Asking JAX for its process count would start its backend, which must come
        # after joining: ask the distributed client instead.
        if job.process_count > 1 and not jax.distributed.is_initialized():
            keras.distribution.initialize()
    devices = jax.devices()
    topology = Topology(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_devices=len(devices),
        num_local_devices=jax.local_device_count(),
    )
    if topology.data_parallel:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    return topology


@contextlib.contextmanager
def without_distribution():
    """Runs the block with no global Keras distribution.

    ``model.save`` creates throw-away Keras variables (an optimizer it inspects); under
    a multi-process ``DataParallel`` each new variable is laid out over the devices of
    every process, a collective that would wait for the processes that do not save.
    Process 0 saves inside this block instead: the throw-away variables stay on its own
    device, and the model's replicated weights are read from its local copy.
    """
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def broadcast_from_chief(topology: Topology, value: int) -> int:
    """Process 0's integer ``value``, in every process of the job (no-op in one process)."""
    if not topology.multi_process:
        return int(value)
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32)))


def any_process(topology: Topology, flag: bool) -> bool:
    """Whether ``flag`` is true in any process of the job (no-op in one process)."""
    if not topology.multi_process:
        return bool(flag)
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([int(bool(flag))], np.int32))
    return bool(np.any(np.asarray(flags)))


class AgreeToStop(keras.callbacks.Callback):
    """Makes every process of a job stop training at the same step.

    After each batch it gathers from every process whether that process received a
    signal; when any did, each process records one in its own catcher, so that its
    checkpoint callback saves (process 0) and stops training. Put it first among the
    callbacks, so that the checkpoint callback sees the agreed decision. Stops that
    every process reaches by itself at the same step (the step budget, a non-finite
    loss, which is the same global value everywhere) need no agreement. In one process
    it does nothing.

    Args:
        topology: the job.
        signals: this process's :class:`~tfp_realnvp.training.interrupts.SignalCatcher`.
    """

    def __init__(self, topology: Topology, signals):
        super().__init__()
        self.topology = topology
        self.signals = signals

    def on_train_batch_end(self, batch, logs=None):
        if not self.topology.multi_process:
            return
        local = self.signals.received
        if any_process(self.topology, local is not None) and local is None:
            self.signals.received = int(signal.SIGTERM)
