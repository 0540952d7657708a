"""Prints the summary tables of ``throughput.py`` JSON reports, partial runs included.

A run cut short (e.g. by a timeout) leaves ``<name>.<implementation>.partial.json``
next to where ``<name>.json`` would be; its measurements are merged into the report of
the same name, or shown on their own when that report was never written.

Usage::

    python -m benchmarks.summarize results/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.throughput_report import compute_ratios, format_summary

PARTIAL = ".partial.json"


def load_reports(paths) -> list[tuple[Path, dict]]:
    """Reports from ``paths``, with the partial worker files merged into their report."""
    reports: dict[Path, dict] = {}
    partials: dict[Path, list[Path]] = {}
    for path in map(Path, paths):
        if path.name.endswith(PARTIAL):
            stem = path.name[: -len(PARTIAL)].rsplit(".", 1)[0]
            partials.setdefault(path.with_name(stem + ".json"), []).append(path)
        elif path.exists():
            reports[path] = json.loads(path.read_text())
    for report_path, files in partials.items():
        report = reports.setdefault(
            report_path,
            {"config": "?", "precision": "?", "backend": None, "device": None, "step_mode": "?", "results": {}},
        )
        for file in files:
            for impl, result in json.loads(file.read_text()).items():
                if impl not in report["results"]:
                    report["results"][impl] = {**result, "partial": True}
                report["backend"] = report.get("backend") or result.get("backend")
                report["device"] = report.get("device") or result.get("device")
        report["ratios"] = compute_ratios(report["results"])
    return sorted(reports.items())


def main(argv=None) -> int:
    """Prints one table per report; returns 1 when no report was found."""
    paths = sys.argv[1:] if argv is None else argv
    reports = load_reports(paths)
    if not reports:
        print("no throughput reports found", file=sys.stderr)
        return 1
    for path, report in reports:
        partial = sorted(impl for impl, r in report["results"].items() if r.get("partial"))
        note = f" (partial: {', '.join(partial)})" if partial else ""
        print(f"-- {path.name}{note}")
        print(format_summary(report))
        errors = report.get("errors") or {}
        for name, message in errors.items():
            print(f"   error in {name}: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
