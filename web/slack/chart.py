"""The metric chart of a finished job as a PNG, drawn with Pillow (no matplotlib).

`metric_chart(epochs, series, title=..., best_epoch=...)` draws one panel for the losses (names
with "loss") and one for the other metrics (the learning rate left out), each series a coloured
line with a dot per epoch (one epoch is one dot), the y range with its min and max labelled, the
epochs on x, and a dashed vertical line at the best epoch. Series values may be None (an epoch
without that metric).
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WIDTH = 900
PANEL_H = 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 240, 44, 40
COLORS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
MAX_SERIES_PER_PANEL = 8


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font only
        return ImageFont.load_default()


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.001:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _numbers(values: Sequence[Any]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(f if math.isfinite(f) else None)
    return out


def _panels(series: dict[str, Sequence[Any]]) -> list[tuple[str, dict[str, list[float | None]]]]:
    losses: dict[str, list[float | None]] = {}
    others: dict[str, list[float | None]] = {}
    for name, values in series.items():
        low = name.lower()
        if low in ("lr", "epoch") or low.startswith(("lr/", "lr-", "train/lr")) or "learning_rate" in low:
            continue  # the schedule is not a quality metric (and its scale flattens the others)
        nums = _numbers(values)
        if not any(v is not None for v in nums):
            continue
        target = losses if "loss" in name.lower() else others
        if len(target) < MAX_SERIES_PER_PANEL:
            target[name] = nums
    out = []
    if losses:
        out.append(("loss", losses))
    if others:
        out.append(("metrics", others))
    return out


def metric_chart(
    epochs: Sequence[int], series: dict[str, Sequence[Any]], *, title: str = "", best_epoch: int | None = None
) -> bytes:
    """PNG bytes of the chart (a panel saying "no metrics" when there is nothing to draw)."""
    panels = _panels(series) if epochs else []
    height = MARGIN_T + max(1, len(panels)) * (PANEL_H + MARGIN_B) + 10
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    title_font, font, small = _font(18), _font(13), _font(11)
    draw.text((MARGIN_L, 12), title or "metrics", fill=(20, 20, 20), font=title_font)
    if not panels:
        draw.text((MARGIN_L, MARGIN_T + 40), "no metrics were reported", fill=(90, 90, 90), font=font)
        return _png(img)

    xs = [int(e) for e in epochs]
    x_min, x_max = min(xs), max(xs)
    color_i = 0
    for p, (label, group) in enumerate(panels):
        top = MARGIN_T + p * (PANEL_H + MARGIN_B)
        left, right, bottom = MARGIN_L, WIDTH - MARGIN_R, top + PANEL_H - 20
        values = [v for vs in group.values() for v in vs if v is not None]
        y_min, y_max = min(values), max(values)
        if y_max - y_min < 1e-12:
            pad = abs(y_max) * 0.1 or 0.5
            y_min, y_max = y_min - pad, y_max + pad
        else:
            pad = (y_max - y_min) * 0.08
            y_min, y_max = y_min - pad, y_max + pad

        def px(x: float, *, lo: float = x_min, hi: float = x_max, a: int = left, b: int = right) -> float:
            if hi == lo:
                return (a + b) / 2
            return a + 12 + (x - lo) / (hi - lo) * (b - a - 24)

        def py(y: float, *, lo: float = y_min, hi: float = y_max, a: int = top + 8, b: int = bottom) -> float:
            return b - (y - lo) / (hi - lo) * (b - a)

        draw.rectangle((left, top + 8, right, bottom), outline=(160, 160, 160))
        for frac in (0.25, 0.5, 0.75):
            y = top + 8 + frac * (bottom - top - 8)
            draw.line((left + 1, y, right - 1, y), fill=(235, 235, 235))
        draw.text((8, top + 8), _fmt(y_max), fill=(80, 80, 80), font=small)
        draw.text((8, bottom - 12), _fmt(y_min), fill=(80, 80, 80), font=small)
        draw.text((left + 4, top - 10), label, fill=(60, 60, 60), font=font)
        step = max(1, math.ceil(len(xs) / 10))
        for e in xs[::step] + ([xs[-1]] if xs[-1] not in xs[::step] else []):
            x = px(e)
            draw.line((x, bottom, x, bottom + 4), fill=(120, 120, 120))
            draw.text((x - 4, bottom + 5), str(e), fill=(80, 80, 80), font=small)
        if best_epoch is not None and x_min <= int(best_epoch) <= x_max:
            x = px(int(best_epoch))
            for y0 in range(top + 8, bottom, 8):
                draw.line((x, y0, x, min(y0 + 4, bottom)), fill=(200, 60, 60))
            draw.text((x + 3, top + 10), "best", fill=(200, 60, 60), font=small)

        legend_y = top + 10
        for name, vals in group.items():
            color = COLORS[color_i % len(COLORS)]
            color_i += 1
            points = [(px(x), py(v)) for x, v in zip(xs, vals, strict=False) if v is not None]
            for a, b in itertools.pairwise(points):
                draw.line((a, b), fill=color, width=3)
            for x, y in points:
                draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=color)
            last = next((v for v in reversed(vals) if v is not None), None)
            draw.rectangle((right + 14, legend_y + 3, right + 26, legend_y + 13), fill=color)
            text = f"{name}  {_fmt(last)}" if last is not None else name
            draw.text((right + 32, legend_y), text[:34], fill=(30, 30, 30), font=font)
            legend_y += 20
    draw.text((MARGIN_L, height - 22), "epoch", fill=(80, 80, 80), font=small)
    return _png(img)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()
