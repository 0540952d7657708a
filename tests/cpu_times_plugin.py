"""``--cpu-times FILE``: one JSON line per test with the CPU seconds it cost.

Under xdist, ``--durations`` counts the time a test waited for workers sharing the
cores; the CPU seconds of the test's own process (``self``) and of the subprocesses
it waited for (``children``) are what it costs. ``scripts/cpu_times.py`` sums a file.
The suite's ``conftest.py`` loads this plugin.
"""

from __future__ import annotations

import json
import resource
import time

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-times",
        metavar="FILE",
        default=None,
        help="append one JSON line per test to FILE: CPU seconds of the test's process (self) and of "
        "the subprocesses it waited for (children), and its wall seconds (scripts/cpu_times.py sums them).",
    )


def _cpu_seconds() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Setup, call and teardown of one test, timed when ``--cpu-times`` is given."""
    path = item.config.getoption("cpu_times")
    if path is None:
        yield
        return
    own, children = _cpu_seconds()
    start = time.perf_counter()
    yield
    own_after, children_after = _cpu_seconds()
    record = {
        "test": item.nodeid,
        "self": round(own_after - own, 3),
        "children": round(children_after - children, 3),
        "wall": round(time.perf_counter() - start, 3),
    }
    # One short line per write, appended: the lines of several xdist workers stay whole.
    with open(path, "a") as stream:
        stream.write(json.dumps(record) + "\n")
