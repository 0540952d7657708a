"""The PNG of ``batch_norm_modes.py`` (Pillow only): inference-mode test bits/dim per
candidate with the re-estimation references, and the gap between the two with the
threshold of the report.
"""

from __future__ import annotations

import io
import math

COLORS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    span = max(high - low, 1e-12)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=10 * magnitude)
    start = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = start
    while value <= high + 1e-9 * span:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _dashed(draw, points, color, width, dash=8, gap=6):
    """Dashed polyline: alternating drawn and skipped pieces along the path."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while pos < length:
            piece = min(left, length - pos)
            if on:
                t0, t1 = pos / length, (pos + piece) / length
                draw.line(
                    [(x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0), (x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1)],
                    fill=color,
                    width=width,
                )
            pos += piece
            left -= piece
            if left <= 1e-9:
                on = not on
                left = dash if on else gap


class _Panel:
    """One axes box: data-to-pixel mapping, ticks, labels; lines drawn on a clipped layer."""

    def __init__(self, canvas, box, xlim, ylim, *, title, xlabel, ylabel):
        from PIL import Image, ImageDraw

        self.canvas, self.box, self.xlim, self.ylim = canvas, box, xlim, ylim
        left, top, right, bottom = box
        self.layer = Image.new("RGBA", (right - left, bottom - top), (255, 255, 255, 0))
        self.draw = ImageDraw.Draw(self.layer)
        draw = ImageDraw.Draw(canvas)
        small, medium = _font(13), _font(15)
        draw.rectangle(box, outline=(0, 0, 0), width=1)
        for x in _nice_ticks(*xlim):
            px = self._x(x) + left
            draw.line([(px, bottom), (px, bottom + 5)], fill=(0, 0, 0))
            draw.line([(px, top), (px, bottom)], fill=(235, 235, 235))
            draw.text((px, bottom + 8), f"{x:g}", fill=(0, 0, 0), font=small, anchor="mt")
        for y in _nice_ticks(*ylim):
            py = self._y(y) + top
            draw.line([(left - 5, py), (left, py)], fill=(0, 0, 0))
            draw.line([(left, py), (right, py)], fill=(235, 235, 235))
            draw.text((left - 8, py), f"{y:g}", fill=(0, 0, 0), font=small, anchor="rm")
        draw.rectangle(box, outline=(0, 0, 0), width=1)
        draw.text(((left + right) / 2, top - 10), title, fill=(0, 0, 0), font=medium, anchor="ms")
        draw.text(((left + right) / 2, bottom + 30), xlabel, fill=(0, 0, 0), font=medium, anchor="mt")
        label = Image.new("RGBA", (bottom - top, 22), (255, 255, 255, 0))
        ImageDraw.Draw(label).text(((bottom - top) / 2, 11), ylabel, fill=(0, 0, 0), font=medium, anchor="mm")
        label = label.rotate(90, expand=True)
        canvas.paste(label, (left - 75, top), label)

    def _x(self, x):
        lo, hi = self.xlim
        return (x - lo) / (hi - lo) * (self.box[2] - self.box[0])

    def _y(self, y):
        lo, hi = self.ylim
        return (hi - y) / (hi - lo) * (self.box[3] - self.box[1])

    def line(self, xs, ys, color, *, width=2, dashed=False, markers=True):
        points = [(self._x(x), self._y(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(points) >= 2:
            (
                _dashed(self.draw, points, color, width)
                if dashed
                else self.draw.line(points, fill=color, width=width, joint="curve")
            )
        if markers:
            for px, py in points:
                self.draw.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=color)

    def hline(self, y, color, *, dashed=True):
        self.line(list(self.xlim), [y, y], color, width=1, dashed=dashed, markers=False)

    def finish(self):
        self.canvas.paste(self.layer, self.box[:2], self.layer)
        from PIL import ImageDraw

        ImageDraw.Draw(self.canvas).rectangle(self.box, outline=(0, 0, 0), width=1)


def _limits(result: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    """The y ranges of the two panels: bits/dim, and the gap."""
    candidates, runs = result["candidates"], result["runs"]
    references = [v for r in runs.values() for v in r["reference_bits_per_dim"]]
    finals = [c["final_inference_bits_per_dim"] for c in candidates] + [
        r["reference_bits_per_dim"][-1] for r in runs.values()
    ]
    values = [v for c in candidates for v in c["inference_bits_per_dim"]] + references
    low = min(values)
    # The old default's early values are far above the rest: cap the axis (lines leave the box).
    high = min(max(values), max(max(finals) + 0.6, low + 0.3))
    pad = 0.05 * (high - low)
    gaps = [g for c in candidates for g in c["gap"]]
    return (low - pad, high + pad), (min(-0.04, min(gaps) - 0.01), min(max(gaps) + 0.02, 0.4))


def _curves(result: dict, left: _Panel, right: _Panel, threshold: float) -> list[tuple]:
    """Draws every curve; returns the legend's ``(color, text, dashed)`` entries."""
    candidates, runs = result["candidates"], result["runs"]
    legend = []
    run_color = {}
    for i, c in enumerate(candidates):
        color = COLORS[i % len(COLORS)]
        run_color.setdefault(c["run"], color)
        steps = runs[c["run"]]["eval_steps"]
        left.line(steps, c["inference_bits_per_dim"], color)
        right.line(steps, c["gap"], color)
        legend.append(
            (color, f"{c['label']}: final {c['final_inference_bits_per_dim']:.3f}, gap {c['final_gap']:+.3f}", False)
        )
    for name, r in runs.items():
        color = (0, 0, 0) if name == "shared" else run_color.get(name, (0, 0, 0))
        left.line(r["eval_steps"], r["reference_bits_per_dim"], color, width=2, dashed=True, markers=False)
        text = {"shared": "re-estimation, weight-norm conditioners (run shared)"}.get(
            name, f"re-estimation, run {name}"
        )
        legend.append((color, f"{text}: final {r['reference_bits_per_dim'][-1]:.3f}", True))
    for y in (threshold, -threshold):
        right.hline(y, (90, 90, 90))
    right.hline(0.0, (0, 0, 0), dashed=False)
    return legend


def _legend_and_note(canvas, legend: list[tuple], settings: dict) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    columns = 2
    for i, (color, text, dashed) in enumerate(legend):
        x = 100 + (i % columns) * 690
        y = 585 + (i // columns) * 24
        if dashed:
            _dashed(draw, [(x, y), (x + 36, y)], color, 3)
        else:
            draw.line([(x, y), (x + 36, y)], fill=color, width=3)
        draw.text((x + 46, y), text, fill=(0, 0, 0), font=font, anchor="lm")
    s = settings
    note = (
        f"RealNVP {s['model']['num_scales']} scales, {s['model']['num_filters']} filters, {s['model']['num_blocks']} block; "
        f"Adam {s['learning_rate']:g}, batch {s['batch_size']}, {s['train_images']} train / {s['test_images']} test images, seed {s['seed']}"
    )
    width, height = canvas.size
    draw.text((width / 2, height - 14), note, fill=(80, 80, 80), font=_font(13), anchor="ms")


def plot_png(result: dict) -> bytes:
    """Two panels: inference-mode test bits/dim per candidate with the re-estimation
    references (dashed), and the gap inference - reference with the report's threshold."""
    from PIL import Image

    threshold = result["method"]["threshold"]
    canvas = Image.new("RGB", (1500, 720), (255, 255, 255))
    xlim = (0, max(result["settings"]["steps"], 1))
    bits_range, gap_range = _limits(result)
    left = _Panel(
        canvas,
        (100, 60, 720, 520),
        xlim,
        bits_range,
        title="Inference-mode test bits/dim (dashed: re-estimated statistics)",
        xlabel="training steps",
        ylabel="bits/dim",
    )
    right = _Panel(
        canvas,
        (860, 60, 1480, 520),
        xlim,
        gap_range,
        title=f"Gap: inference - re-estimation (dotted: +/- {threshold:g})",
        xlabel="training steps",
        ylabel="bits/dim",
    )
    legend = _curves(result, left, right, threshold)
    left.finish()
    right.finish()
    _legend_and_note(canvas, legend, result["settings"])
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
