"""``--cpu-times`` (``cpu_times_plugin``) and ``scripts/cpu_times.py``: what each test costs."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import cpu_times  # noqa: E402 (scripts/ is not a package)

pytestmark = pytest.mark.backend_independent

#: A test that burns 0.4 CPU seconds in its own process and one that waits for a
#: subprocess burning 0.4: the plugin must tell them apart.
BURN = """
import subprocess, sys, time

SPIN = "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end:\\n    pass\\n"

def test_own():
    exec(SPIN)

def test_child():
    subprocess.run([sys.executable, "-c", SPIN], check=True)
"""


def test_cpu_times_separates_own_and_subprocess_seconds(tmp_path):
    (tmp_path / "test_burn.py").write_text(textwrap.dedent(BURN))
    out = tmp_path / "cpu.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))
    argv = ["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "cpu_times_plugin", "--cpu-times", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *argv, "test_burn.py"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = {r["test"]: r for r in cpu_times.read_records(out)}
    assert sorted(records) == ["test_burn.py::test_child", "test_burn.py::test_own"]
    own, child = records["test_burn.py::test_own"], records["test_burn.py::test_child"]
    assert 0.35 <= own["self"] < 1.5 and own["children"] < 0.05, own
    assert 0.35 <= child["children"] < 1.5 and child["self"] < 0.3, child
    assert all(r["wall"] >= 0.35 for r in records.values())
    table = cpu_times.summary(list(records.values()), top=5)
    assert table.splitlines()[0].startswith("2 tests: ") and "test_burn.py::test_child" in table


def test_a_record_without_its_fields_is_refused_by_name(tmp_path):
    path = tmp_path / "cpu.jsonl"
    path.write_text(json.dumps({"test": "a", "self": 1.0}) + "\n")
    with pytest.raises(ValueError, match=r"lacks \['children', 'wall'\]"):
        cpu_times.read_records(path)
