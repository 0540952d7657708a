"""Sums the ``--cpu-times`` records of a test run: the costliest tests and files.

    pytest -n 3 -m "not slow" --cpu-times cpu.jsonl
    python scripts/cpu_times.py cpu.jsonl --top 30

Each record is one test: CPU seconds of its pytest process (``self``), of the
subprocesses it waited for (``children``) and its wall seconds.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib


def read_records(path: pathlib.Path) -> list[dict]:
    """The records of ``path``, one JSON object per line."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        missing = {"test", "self", "children", "wall"} - record.keys()
        if missing:
            raise ValueError(f"{path}: a record lacks {sorted(missing)}; received {record}.")
    return records


def cpu_seconds(record: dict) -> float:
    """The CPU seconds of one record: its own process' and its subprocesses'."""
    return record["self"] + record["children"]


def summary(records: list[dict], *, top: int) -> str:
    """A text table: totals, the ``top`` files and the ``top`` tests by CPU seconds."""
    files: collections.Counter = collections.Counter()
    for record in records:
        files[record["test"].split("::")[0]] += cpu_seconds(record)
    lines = [
        f"{len(records)} tests: {sum(map(cpu_seconds, records)):.0f} CPU s "
        f"({sum(r['children'] for r in records):.0f} in subprocesses), {sum(r['wall'] for r in records):.0f} wall s summed",
        "",
        "CPU s  file",
    ]
    lines += [f"{seconds:6.1f} {name}" for name, seconds in files.most_common(top)]
    lines += ["", "CPU s  (subprocesses)  wall s  test"]
    for record in sorted(records, key=cpu_seconds, reverse=True)[:top]:
        lines.append(f"{cpu_seconds(record):6.1f} ({record['children']:6.1f}) {record['wall']:7.1f}  {record['test']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=pathlib.Path, help="the file that --cpu-times wrote")
    parser.add_argument("--top", type=int, default=25, help="files and tests to list (default: 25)")
    args = parser.parse_args(argv)
    print(summary(read_records(args.path), top=args.top))


if __name__ == "__main__":
    main()
