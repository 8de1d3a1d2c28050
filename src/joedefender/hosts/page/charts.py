"""The page's charts as geometry: bars, axis ticks and a legend, drawn by `templates/chart.html`
as inline SVG (no script, nothing fetched; the labels go through the template's escaping).

Two shapes: grouped bars over time (alerts per hour) and horizontal bars per label (sample jobs
by state). Labels are whatever the counts are keyed by, so a state added later is drawn too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str  # the CSS class that colours it
    title: str  # shown on hover


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    title: str
    bars: list[Bar]
    labels: list[Label]
    gridlines: list[float]  # y of each horizontal grid line
    legend: list[tuple[str, str]]  # (series, label)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten that is at least `value` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return int(next(step * power for step in (1, 2, 5, 10) if step * power >= value))


_LEFT, _BOTTOM, _TOP = 40.0, 28.0, 12.0


def grouped(
    title: str,
    groups: Sequence[tuple[float, Mapping[str, int]]],
    series: Sequence[tuple[str, str]],
    *,
    width: float = 1060.0,
    height: float = 240.0,
) -> Chart:
    """One group of bars per moment (a Unix time, labelled HH:00 UTC every 3rd group), one bar per
    (series key, legend label) in `series`; the y axis from 0 to a round maximum."""
    top = nice_ceiling(max((counts.get(key, 0) for _, counts in groups for key, _ in series), default=0))
    plot_w, plot_h = width - _LEFT - 8, height - _BOTTOM - _TOP
    slot = plot_w / max(1, len(groups))
    bar_w = slot * 0.8 / max(1, len(series))
    bars, labels = [], []
    for index, (moment, counts) in enumerate(groups):
        x0 = _LEFT + index * slot + slot * 0.1
        hour = datetime.fromtimestamp(moment, UTC).strftime("%H:00")
        for n, (key, name) in enumerate(series):
            value = counts.get(key, 0)
            h = plot_h * value / top
            bars.append(Bar(x0 + n * bar_w, _TOP + plot_h - h, bar_w, h, key, f"{hour} UTC: {value} {name}"))
        if index % 3 == 0 or index == len(groups) - 1:
            labels.append(Label(x0 + slot * 0.4, height - 8, hour))
    steps = [top * n / 4 for n in range(5)] if top >= 4 else list(range(top + 1))
    gridlines = [_TOP + plot_h - plot_h * s / top for s in steps]
    labels += [Label(_LEFT - 6, y + 4, f"{s:g}", "end") for s, y in zip(steps, gridlines, strict=True)]
    return Chart(width, height, title, bars, labels, gridlines, list(series))


def horizontal(title: str, counts: Mapping[str, int], *, width: float = 340.0, row: float = 22.0) -> Chart:
    """One bar per label, in the mapping's order, its count written after it."""
    label_w = 90.0
    plot_w = width - label_w - 50
    top = max(counts.values(), default=0) or 1
    bars, labels = [], []
    for index, (name, value) in enumerate(counts.items()):
        y = 6 + index * row
        w = plot_w * value / top
        bars.append(Bar(label_w, y, w, row - 6, "count", f"{name}: {value}"))
        labels.append(Label(label_w - 6, y + row - 10, name, "end"))
        labels.append(Label(label_w + w + 6, y + row - 10, str(value), "start"))
    return Chart(width, 12 + len(counts) * row, title, bars, labels, [], [])
