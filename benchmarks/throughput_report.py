"""The package/baseline ratios and the summary table of a ``throughput.py`` report.

Standard library only: ``summarize.py`` prints saved reports with any Python.
"""

from __future__ import annotations

import statistics


def _ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def _ratio_entry(pkg: dict, base: dict) -> dict:
    entry = {
        "images_per_s": _ratio(pkg["images_per_s"], base["images_per_s"]),
        "peak_memory_bytes": _ratio(pkg.get("peak_memory_bytes"), base.get("peak_memory_bytes")),
    }
    a, b = pkg.get("images_per_s_repeats") or [], base.get("images_per_s_repeats") or []
    if a and len(a) == len(b):
        # Repeat i of both ran back to back under the interleaved schedule.
        entry["images_per_s_paired_median"] = statistics.median(x / y for x, y in zip(a, b))
    return entry


def compute_ratios(results: dict) -> dict:
    """package / baseline for every throughput (and peak memory) measured by both."""
    pkg, base = results.get("package"), results.get("baseline")
    if not pkg or not base:
        return {}
    ratios = {"train": {}}
    for batch, stats in (pkg.get("train") or {}).items():
        other = (base.get("train") or {}).get(batch)
        if other:
            ratios["train"][batch] = _ratio_entry(stats, other)
    for key in ("log_prob", "sample"):
        if pkg.get(key) and base.get(key):
            ratios[key] = _ratio_entry(pkg[key], base[key])
    return ratios


def summary_rows(report: dict) -> list[tuple]:
    """Rows ``(what, batch, package img/s, baseline img/s, ratio, paired ratio, package MiB, baseline MiB)``.

    The paired ratio is the median over repeats of package/baseline for repeats that ran
    back to back (``--schedule interleaved``); ``None`` otherwise.
    """
    results = report.get("results", {})
    pkg, base = results.get("package") or {}, results.get("baseline") or {}
    rows = []
    batches = sorted({int(b) for r in (pkg, base) for b in (r.get("train") or {})})
    for batch in batches:
        p, b = (pkg.get("train") or {}).get(str(batch)), (base.get("train") or {}).get(str(batch))
        rows.append(("train", batch, p, b))
    for key in ("log_prob", "sample"):
        p, b = pkg.get(key), base.get(key)
        if p or b:
            rows.append((key, (p or b)["batch_size"], p, b))
    out = []
    for what, batch, p, b in rows:
        pr = p["images_per_s"] if p else None
        br = b["images_per_s"] if b else None
        pm = p.get("peak_memory_bytes") if p else None
        bm = b.get("peak_memory_bytes") if b else None
        paired = None
        if report.get("schedule") == "interleaved" and p and b:
            paired = _ratio_entry(p, b).get("images_per_s_paired_median")
        out.append((what, batch, pr, br, _ratio(pr, br), paired, pm, bm))
    return out


def format_summary(report: dict) -> str:
    """A plain-text table of the report."""

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = (
        f"config={report['config']} precision={report['precision']} backend={report['backend']} "
        f"device={(report.get('device') or {}).get('platform')} jit={report.get('jit')} "
        f"step_mode={report['step_mode']} schedule={report.get('schedule', 'isolated')}"
    )
    lines = [
        head,
        f"{'what':<9}{'batch':>6}{'package img/s':>15}{'baseline img/s':>16}{'pkg/base':>10}{'paired':>8}"
        f"{'pkg MiB':>10}{'base MiB':>10}",
    ]
    for what, batch, pr, br, ratio, paired, pm, bm in summary_rows(report):
        lines.append(
            f"{what:<9}{batch:>6}{num(pr, '.1f'):>15}{num(br, '.1f'):>16}{num(ratio, '.3f'):>10}{num(paired, '.3f'):>8}"
            f"{num(pm and pm / 2**20, '.0f'):>10}{num(bm and bm / 2**20, '.0f'):>10}"
        )
    return "\n".join(lines)
