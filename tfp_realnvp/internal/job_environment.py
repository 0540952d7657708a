"""Keras' environment variables of a multi-process job, read in one place.

``keras.distribution.initialize()`` joins the processes named by
``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and
``KERAS_DISTRIBUTION_PROCESS_ID``. The training run reads them to join a job; the
streaming readers read the last two to pick this process's share of the files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ADDRESSES_VARIABLE = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
"""Keras' environment variable for the addresses of a distributed job's processes."""

NUM_PROCESSES_VARIABLE = "KERAS_DISTRIBUTION_NUM_PROCESSES"
"""Keras' environment variable for the number of processes of a distributed job."""

PROCESS_ID_VARIABLE = "KERAS_DISTRIBUTION_PROCESS_ID"
"""Keras' environment variable for this process's index in a distributed job."""

JOB_VARIABLES = (ADDRESSES_VARIABLE, NUM_PROCESSES_VARIABLE, PROCESS_ID_VARIABLE)
"""Keras' environment variables for a multi-process job."""


@dataclass(frozen=True)
class JobEnvironment:
    """What the environment says of this process's job.

    Attributes:
        process_count: processes in the job (1 when the variables are unset).
        process_index: this process, ``0 <= process_index < process_count``.
        variables: the job variables that are set (and not empty), by name.
    """

    process_count: int = 1
    process_index: int = 0
    variables: Mapping[str, str] | None = None

    @property
    def is_set(self) -> bool:
        """Whether any job variable is set."""
        return bool(self.variables)


def job_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keras' job variables that are set (and not empty) in ``environ`` (``None``: ``os.environ``)."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in JOB_VARIABLES if environ.get(name)}


def _integer(name: str, found: Mapping[str, str]) -> int:
    raw = found[name]
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer; received {raw!r}.") from None


def read_job_environment(environ: Mapping[str, str] | None = None, *, require_addresses: bool = True) -> JobEnvironment:
    """This process's place in its job, from Keras' environment variables.

    Args:
        environ: the variables to read; ``None`` reads ``os.environ``.
        require_addresses: whether a job also needs ``KERAS_DISTRIBUTION_JOB_ADDRESSES``
            (joining one does; choosing a share of files needs only the count and index).

    Returns:
        A :class:`JobEnvironment`; one process of one when no variable is set.

    Raises:
        ValueError: naming the variables and their values when the set is incomplete, a
            value is not an integer, or the index does not lie in ``[0, count)``.
    """
    found = job_variables(environ)
    needed = JOB_VARIABLES if require_addresses else (NUM_PROCESSES_VARIABLE, PROCESS_ID_VARIABLE)
    if not any(name in found for name in needed):
        return JobEnvironment(variables=found)
    missing = [name for name in needed if name not in found]
    if missing:
        raise ValueError(
            f"a multi-process job needs all of {', '.join(needed)}; received {dict(found)!r}, "
            f"missing {', '.join(missing)}."
        )
    count, index = _integer(NUM_PROCESSES_VARIABLE, found), _integer(PROCESS_ID_VARIABLE, found)
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"{PROCESS_ID_VARIABLE} must lie in [0, {NUM_PROCESSES_VARIABLE}); received "
            f"{NUM_PROCESSES_VARIABLE}={found[NUM_PROCESSES_VARIABLE]!r}, {PROCESS_ID_VARIABLE}={found[PROCESS_ID_VARIABLE]!r}."
        )
    return JobEnvironment(process_count=count, process_index=index, variables=found)
