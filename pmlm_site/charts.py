"""Server-rendered SVG charts: no JavaScript library, no CDN, readable by screen readers.

`line_chart` draws one or more series on shared axes and returns SVG markup with a <title> and
a <desc> that states every point, so the figure carries its numbers for people who cannot see it.
"""

from __future__ import annotations

import math
import uuid
from html import escape

from django.utils.safestring import SafeString, mark_safe

COLOURS = ("#0f6e6e", "#b3541e", "#7a3e8f", "#3558a8")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    ticks = [round(math.floor(low / step) * step, 10)]
    while ticks[-1] < high - step * 1e-6:  # the last tick is at or above the highest value
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.2f}".rstrip("0").rstrip(".")


def _svg_open(width: int, height: int, title: str, description: str) -> str:
    """The opening tag with a title and a description that states every figure; several charts on
    one page each get their own ids."""
    uid = uuid.uuid4().hex[:8]
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title-{uid} chart-desc-{uid}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title-{uid}">{escape(title)}</title>'
        f'<desc id="chart-desc-{uid}">{escape(description)}</desc>'
    )


def _y_grid(ticks: list[float], sy, left: float, right_edge: float) -> list[str]:
    return [
        f'<line x1="{left}" x2="{right_edge}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="grid"/>'
        f'<text x="{left - 8}" y="{sy(y) + 4:.1f}" text-anchor="end" class="tick">{_number(y)}</text>'
        for y in ticks
    ]


def _y_label(label: str, middle: float) -> str:
    return (
        f'<text transform="translate(14 {middle:.0f}) rotate(-90)" text-anchor="middle" class="axis">'
        f"{escape(label)}</text>"
    )


def line_chart(
    series: list[tuple[str, list[tuple[float, float]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 260,
    x_range: tuple[float, float] | None = None,
) -> SafeString:
    points = [p for _, values in series for p in values]
    if not points:
        return mark_safe("")
    left, right, top, bottom = 56, 16, 30 if len(series) > 1 else 16, 44
    xs, ys = [x for x, _ in points], [y for _, y in points]
    y_ticks = _ticks(min(ys), max(ys))
    y0, y1 = y_ticks[0], y_ticks[-1]
    if x_range:  # a fixed domain (e.g. 0–42 gestational weeks) keeps charts of different patients comparable
        x0, x1 = min(x_range[0], min(xs)), max(x_range[1], max(xs))
        x_ticks = [t for t in _ticks(x0, x1, count=6) if x0 <= t <= x1]
    else:
        x_ticks = _ticks(min(xs), max(xs))
        x0, x1 = x_ticks[0], x_ticks[-1]

    def sx(x):
        return left + (x - x0) / ((x1 - x0) or 1) * (width - left - right)

    def sy(y):
        return height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - top - bottom)

    described = "; ".join(
        f"{name}: " + ", ".join(f"{_number(x)} → {_number(y)}" for x, y in values) for name, values in series
    )
    parts = [_svg_open(width, height, title, f"{x_label} against {y_label}. {described}")]
    parts += _y_grid(y_ticks, sy, left, width - right)
    for x in x_ticks:
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - bottom + 18}" text-anchor="middle" class="tick">{_number(x)}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" text-anchor="middle" class="axis">'
        f"{escape(x_label)}</text>"
    )
    parts.append(_y_label(y_label, (top + height - bottom) / 2))
    for n, (name, values) in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for x, y in values:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}"><title>{escape(name)}: '
                f"{_number(x)} → {_number(y)}</title></circle>"
            )
    if len(series) > 1:  # a legend, since colour alone names the lines
        for n, (name, _) in enumerate(series):
            x = left + 8 + n * 110
            parts.append(
                f'<rect x="{x}" y="8" width="12" height="4" fill="{COLOURS[n % len(COLOURS)]}"/>'
                f'<text x="{x + 16}" y="13" class="tick">{escape(name)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def interval_chart(
    categories: list[str],
    series: list[tuple[str, list[tuple[float, float, float] | None]]],
    *,
    title: str,
    y_label: str,
    width: int = 640,
    height: int = 280,
) -> SafeString:
    """Means with their confidence intervals (value, low, high) per category, one marker per
    series side by side; the description states every figure."""
    values = [v for _, points in series for p in points if p for v in p]
    if not values or not categories:
        return mark_safe("")
    left, right, top, bottom = 56, 16, 30, 56
    y_ticks = _ticks(min(values), max(values))
    y0, y1 = y_ticks[0], y_ticks[-1]
    band = (width - left - right) / len(categories)

    def sy(y):
        return height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - top - bottom)

    def sx(category: int, n: int):
        return left + band * (category + 0.5) + (n - (len(series) - 1) / 2) * min(18, band / (len(series) + 1))

    described = "; ".join(
        f"{name}: "
        + ", ".join(
            f"{c} {_number(p[0])} (95% CI {_number(p[1])} to {_number(p[2])})" for c, p in zip(categories, points) if p
        )
        for name, points in series
    )
    parts = [_svg_open(width, height, title, f"{y_label} by {', '.join(categories)}. {described}")]
    parts += _y_grid(y_ticks, sy, left, width - right)
    for c, category in enumerate(categories):
        parts.append(
            f'<text x="{left + band * (c + 0.5):.1f}" y="{height - bottom + 18}" text-anchor="middle" class="tick">'
            f"{escape(category)}</text>"
        )
    parts.append(_y_label(y_label, (top + height - bottom) / 2))
    for n, (name, points) in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        for c, point in enumerate(points):
            if not point:
                continue
            value, low, high = point
            x = sx(c, n)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{sy(low):.1f}" y2="{sy(high):.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
                f'<line x1="{x - 5:.1f}" x2="{x + 5:.1f}" y1="{sy(low):.1f}" y2="{sy(low):.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
                f'<line x1="{x - 5:.1f}" x2="{x + 5:.1f}" y1="{sy(high):.1f}" y2="{sy(high):.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
                f'<circle cx="{x:.1f}" cy="{sy(value):.1f}" r="4.5" fill="{colour}"><title>{escape(name)}, '
                f"{escape(categories[c])}: {_number(value)} (95% CI {_number(low)} to {_number(high)})</title></circle>"
            )
    for n, (name, _) in enumerate(series):
        x = left + 8 + n * 150
        parts.append(
            f'<rect x="{x}" y="8" width="12" height="12" rx="6" fill="{COLOURS[n % len(COLOURS)]}"/>'
            f'<text x="{x + 18}" y="18" class="tick">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
