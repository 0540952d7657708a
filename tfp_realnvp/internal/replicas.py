"""The replicas of a TensorFlow distribution strategy, as the model's train step sees them.

``tf.distribute`` runs the train step once per replica, each on its share of the batch;
the model scales its training noise and loss by what this module reports. JAX's data
parallelism computes on the global batch in one program, so there every answer is one
replica. ``MultiWorkerMirroredStrategy`` is refused here: Keras 3's ``fit`` does not
train under it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from tfp_realnvp.internal.backend import backend_name

_MULTI_WORKER_REFUSAL = (
    "Keras 3's fit cannot train under TensorFlow's MultiWorkerMirroredStrategy "
    "(keras-team/keras#20585); {what}. Train on several hosts with the JAX backend instead: "
    "KERAS_BACKEND=jax, with KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and "
    "KERAS_DISTRIBUTION_PROCESS_ID set for each process (see the README, 'Training at scale')."
)


def num_replicas_in_sync() -> int:
    """Replicas that each compute a share of the batch: those of the TensorFlow
    distribution strategy in scope, else 1 (JAX's data parallelism computes on the
    global batch in one program)."""
    if backend_name() != "tensorflow":
        return 1
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def replica_index():
    """Index of the replica running this code (a scalar tensor), or ``None`` outside a
    step of a TensorFlow strategy with 2 or more replicas."""
    if backend_name() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync < 2:
        return None
    return context.replica_id_in_sync_group


def refuse_multi_worker_tensorflow(environ: Mapping[str, str] | None = None, *, check_environment: bool = True) -> None:
    """Raises ``ValueError`` when a ``MultiWorkerMirroredStrategy`` scope is active or
    (with ``check_environment``) ``TF_CONFIG`` names several TensorFlow workers.

    Tried with two local workers (TensorFlow 2.21, Keras 3.15): ``fit`` of even a
    one-layer model fails inside Keras with ``ValueError: Attempt to convert a value
    (PerReplica:...)``.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG") if check_environment else None
    if text:
        try:
            config = json.loads(text)
        except ValueError:
            raise ValueError(f"TF_CONFIG is not JSON; received {text[:200]!r}.") from None
        cluster = config.get("cluster", {}) if isinstance(config, dict) else {}
        workers = sum(len(cluster.get(role, [])) for role in ("chief", "worker"))
        if workers > 1:
            raise ValueError(_MULTI_WORKER_REFUSAL.format(what=f"TF_CONFIG names {workers} workers"))
    if backend_name() == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise ValueError(_MULTI_WORKER_REFUSAL.format(what="a MultiWorkerMirroredStrategy scope is active"))
