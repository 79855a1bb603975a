"""Small server-rendered SVG line charts (no JavaScript, no external assets). Pure logic."""

from __future__ import annotations

import math
import time
from typing import Sequence

from twisted.web.template import Tag

from ct.dashboard.html import tags

WIDTH, HEIGHT = 320, 110
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 36, 8, 8, 18


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    if value == int(value):
        return str(int(value))
    return f"{value:.1f}"


def nice_ceiling(value: float) -> float:
    """The chart's top: 2, 4, 6, 8 or 10 times a power of ten, above ``value`` (at least 2),
    so the middle grid line is a round number too."""
    if value <= 2:
        return 2.0
    scale = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 6, 8, 10):
        if value <= step * scale:
            return float(step * scale)
    return float(10 * scale)


def _clock(at: float, span: float) -> str:
    fmt = "%H:%M" if span <= 2 * 86400 else "%d %b"
    return time.strftime(fmt, time.gmtime(at))


def line_chart(points: Sequence[tuple[float, float | None]], since: float, until: float,
               label: str) -> Tag:
    """An SVG chart of ``points`` ``(time, value)`` over ``[since, until]``; gaps where None."""
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    values = [v for _, v in points if v is not None]
    top = nice_ceiling(max(values) if values else 0.0)
    span = max(until - since, 1e-9)

    def xy(t: float, v: float) -> str:
        x = PAD_LEFT + (t - since) / span * inner_w
        y = PAD_TOP + inner_h - (v / top) * inner_h
        return f"{x:.1f},{y:.1f}"

    svg = Tag("svg", attributes={
        "viewBox": f"0 0 {WIDTH} {HEIGHT}", "class": "chart", "role": "img",
        "aria-label": label, "xmlns": "http://www.w3.org/2000/svg",
        "preserveAspectRatio": "none"})
    for frac in (0.0, 0.5, 1.0):
        y = PAD_TOP + inner_h - frac * inner_h
        svg(Tag("line", attributes={"x1": str(PAD_LEFT), "x2": str(WIDTH - PAD_RIGHT),
                                    "y1": f"{y:.1f}", "y2": f"{y:.1f}", "class": "grid"}))
        svg(Tag("text", attributes={"x": str(PAD_LEFT - 4), "y": f"{y + 3:.1f}",
                                    "class": "axis", "text-anchor": "end"})(_fmt(frac * top)))
    for t, anchor in ((since, "start"), (until, "end")):
        x = PAD_LEFT if anchor == "start" else WIDTH - PAD_RIGHT
        svg(Tag("text", attributes={"x": str(x), "y": str(HEIGHT - 4), "class": "axis",
                                    "text-anchor": anchor})(_clock(t, span)))
    runs: list[list[str]] = [[]]
    for t, v in sorted(points):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(xy(t, v))
    for run in runs:
        if len(run) == 1:
            x, y = run[0].split(",")
            svg(Tag("circle", attributes={"cx": x, "cy": y, "r": "2.5", "class": "dot"}))
        elif run:
            base_left = f"{run[0].split(',')[0]},{PAD_TOP + inner_h:.1f}"
            base_right = f"{run[-1].split(',')[0]},{PAD_TOP + inner_h:.1f}"
            svg(Tag("polygon", attributes={"points": " ".join([base_left] + run + [base_right]),
                                           "class": "area"}))
            svg(Tag("polyline", attributes={"points": " ".join(run), "class": "line"}))
    if not values:
        svg(Tag("text", attributes={"x": str(PAD_LEFT + inner_w / 2),
                                    "y": str(PAD_TOP + inner_h / 2), "class": "empty",
                                    "text-anchor": "middle"})("no data yet"))
    return tags.figure(svg, tags.figcaption(label), class_="chart-box")
