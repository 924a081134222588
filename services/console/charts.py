"""Server-side SVG charts: no JavaScript library, nothing from a CDN, and easy to test (it is markup).

Each chart is an accessible image (role="img", a <title> and a <desc> that says what it shows) and carries
data-points, the number of points that hold a value, so tests can tell a drawn series from an empty frame.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 28
PALETTE = ["#1f5fbf", "#b05f00", "#7b3fb5", "#137333", "#b42318", "#00747a", "#5b6475"]
STATUS_COLORS = {"2": "#137333", "3": "#1f5fbf", "4": "#b05f00", "5": "#b42318"}


@dataclass
class Series:
    label: str
    points: list  # [(unix time, value or None)]
    color: str = ""


def nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least `value` (a readable top for the y axis)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power


def format_value(value: float, unit: str = "") -> str:
    if value >= 1000:
        text = f"{value / 1000:.1f}k"
    elif value >= 10 or value == int(value):
        text = f"{value:.0f}"
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def time_label(moment: float, span: float) -> str:
    when = datetime.fromtimestamp(moment, UTC)
    return when.strftime("%H:%M:%S" if span <= 900 else "%H:%M" if span <= 86400 else "%m-%d %H:%M")


def _segments(points, x, y):
    """Polylines split where a value is missing: a gap is drawn as a gap, not as a fall to zero."""
    segment = []
    for moment, value in points:
        if value is None:
            if segment:
                yield segment
            segment = []
        else:
            segment.append(f"{x(moment):.1f},{y(value):.1f}")
    if segment:
        yield segment


def line_chart(title: str, series: list[Series], *, start: float, end: float, unit: str = "",
               chart_id: str = "") -> SafeString:
    values = [v for s in series for _, v in s.points if v is not None]
    top = nice_ceiling(max(values, default=0))
    span = max(end - start, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment):
        return LEFT + (moment - start) / span * plot_w

    def y(value):
        return TOP + plot_h - (value / top) * plot_h

    parts = [_grid(top, unit, plot_w, plot_h), _time_axis(start, end, span, plot_h)]
    drawn = 0
    for index, one in enumerate(series):
        color = one.color or PALETTE[index % len(PALETTE)]
        for segment in _segments(one.points, x, y):
            drawn += len(segment)
            if len(segment) == 1:
                cx, cy = segment[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
            else:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                             f'stroke-linejoin="round" points="{" ".join(segment)}"/>')
    description = _describe(series, unit)
    legend = "".join(
        format_html('<li><span class="swatch" style="background:{}"></span>{}</li>',
                    one.color or PALETTE[i % len(PALETTE)], one.label)
        for i, one in enumerate(series)
    )
    ident = escape(chart_id or title.lower().replace(" ", "-"))
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" preserveAspectRatio="none" '
        f'aria-labelledby="{ident}-t {ident}-d" data-points="{drawn}" id="{ident}">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(description)}</desc>'
        + "".join(parts) + "</svg>"
    )
    return mark_safe(  # noqa: S308 -- every text above is escaped; numbers are formatted by us
        f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>{svg}'
        f'<ul class="legend">{legend}</ul><p class="chart-summary">{escape(description)}</p></figure>'
    )


def _grid(top: float, unit: str, plot_w: float, plot_h: float) -> str:
    lines = []
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        gy = TOP + plot_h - fraction * plot_h
        lines.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        if fraction in (0, 0.5, 1):
            lines.append(f'<text class="tick" x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                         f"{escape(format_value(top * fraction, unit))}</text>")
    return "".join(lines)


def _time_axis(start: float, end: float, span: float, plot_h: float) -> str:
    base = TOP + plot_h + 18
    anchors = (("start", start, LEFT, ""), ("middle", (start + end) / 2, LEFT + (WIDTH - LEFT - RIGHT) / 2, ""),
               ("end", end, WIDTH - RIGHT, " UTC"))
    return "".join(f'<text class="tick" x="{px:.1f}" y="{base}" text-anchor="{anchor}">'
                   f"{escape(time_label(moment, span))}{suffix}</text>"
                   for anchor, moment, px, suffix in anchors)


def _describe(series: list[Series], unit: str) -> str:
    parts = []
    for one in series:
        values = [(t, v) for t, v in one.points if v is not None]
        if not values:
            continue
        peak_time, peak = max(values, key=lambda item: item[1])
        span = (one.points[-1][0] - one.points[0][0]) if len(one.points) > 1 else 0
        parts.append(f"{one.label}: peak {format_value(peak, unit)} at {time_label(peak_time, span)} UTC, "
                     f"last {format_value(values[-1][1], unit)}")
    return "; ".join(parts) or "No data in this range."


def bar_chart(title: str, bars: list[tuple[str, float, str]], *, maximum: float | None = None,
              chart_id: str = "") -> SafeString:
    """Horizontal bars: (label, value, text shown after the bar)."""
    top = maximum or nice_ceiling(max((value for _, value, _ in bars), default=0))
    row, label_w, bar_w = 26, 170, WIDTH - 170 - 110
    height = max(row * len(bars) + 8, 34)
    ident = escape(chart_id or title.lower().replace(" ", "-"))
    parts = []
    for index, (label, value, text) in enumerate(bars):
        y0 = 4 + index * row
        width = 0 if not top else max(bar_w * min(value / top, 1), 1 if value else 0)
        parts.append(
            f'<text class="tick" x="{label_w - 8}" y="{y0 + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="track" x="{label_w}" y="{y0 + 3}" width="{bar_w}" height="16" rx="3"/>'
            f'<rect x="{label_w}" y="{y0 + 3}" width="{width:.1f}" height="16" rx="3" '
            f'fill="{PALETTE[index % len(PALETTE)]}"/>'
            f'<text class="tick" x="{label_w + bar_w + 8}" y="{y0 + 15}">{escape(text)}</text>'
        )
    if not bars:
        parts.append('<text class="tick" x="8" y="22">Nothing to show.</text>')
    description = "; ".join(f"{label}: {text}" for label, _, text in bars) or "Nothing to show."
    return mark_safe(  # noqa: S308 -- escaped above
        f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>'
        f'<svg class="chart bars" viewBox="0 0 {WIDTH} {height}" role="img" data-points="{len(bars)}" '
        f'aria-labelledby="{ident}-t {ident}-d" id="{ident}"><title id="{ident}-t">{escape(title)}</title>'
        f'<desc id="{ident}-d">{escape(description)}</desc>{"".join(parts)}</svg></figure>'
    )
