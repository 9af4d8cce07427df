"""Server-side SVG charts of the bias dashboard: rates with intervals, ratios, trends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Okabe-Ito: told apart by people with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8A6A00", "#56B4E9", "#000000", "#7F7F7F")
FOUR_FIFTHS = 0.8
WIDTH = 640
LABEL_WIDTH = 250
RIGHT = 110  # room for the value and note printed after a bar
ROW = 30
TOP = 30


@dataclass
class Bar:
    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    highlight: bool = False
    note: str = ""  # shown instead of a value: "suppressed", "reference", ...


@dataclass
class Series:
    label: str
    # (position on the period axis, value) per point; None breaks the line.
    points: Sequence[tuple[int, float | None]]
    colour: str


def _number(value: float) -> str:
    return f"{value:.2f}"


def _ticks(top: float) -> list[float]:
    step = 0.25 if top <= 1.5 else 0.5
    count = int(top / step + 1e-9)
    return [round(step * index, 2) for index in range(count + 1)]


def bars_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    description: str,
    top: float = 1.0,
    thresholds: Sequence[tuple[float, str]] = (),
    chart_id: str = "bars",
) -> SafeString:
    """Horizontal bars from 0 to `top`, a whisker from each bar's low to high, and labelled
    vertical lines at the thresholds (the four-fifths line on ratio charts)."""
    top = max([top] + [bar.high or bar.value or 0.0 for bar in bars] + [1.0])
    plot = WIDTH - LABEL_WIDTH - RIGHT
    height = TOP + ROW * len(bars) + 28

    def x(value: float) -> float:
        return LABEL_WIDTH + plot * min(value, top) / top

    parts = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" class="bias-chart" viewBox="0 0 {} {}" '
            'role="img" aria-labelledby="{}-title {}-desc">'
            '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>',
            WIDTH,
            height,
            chart_id,
            chart_id,
            chart_id,
            title,
            chart_id,
            description,
        )
    ]
    axis_y = TOP + ROW * len(bars)
    for tick in _ticks(top):
        parts.append(
            format_html(
                '<line class="grid" x1="{x}" x2="{x}" y1="{y0}" y2="{y1}"/>'
                '<text class="tick" x="{x}" y="{ty}" text-anchor="middle">{label}</text>',
                x=f"{x(tick):.1f}",
                y0=TOP - 6,
                y1=axis_y,
                ty=axis_y + 16,
                label=f"{tick:g}",
            )
        )
    for row, bar in enumerate(bars):
        y = TOP + ROW * row
        parts.append(
            format_html(
                '<text class="label{}" x="{}" y="{}" text-anchor="end">{}</text>',
                " highlight" if bar.highlight else "",
                LABEL_WIDTH - 8,
                y + ROW / 2 + 4,
                _shorten(bar.label, 36),
            )
        )
        if bar.value is None:
            parts.append(
                format_html(
                    '<text class="missing" x="{}" y="{}">{}</text>',
                    LABEL_WIDTH + 4,
                    y + ROW / 2 + 4,
                    bar.note or "—",
                )
            )
            continue
        parts.append(
            format_html(
                '<rect class="bar{}" x="{}" y="{}" width="{}" height="{}">'
                "<title>{}: {}</title></rect>",
                " highlight" if bar.highlight else "",
                LABEL_WIDTH,
                y + 6,
                f"{max(x(bar.value) - LABEL_WIDTH, 1):.1f}",
                ROW - 12,
                bar.label,
                _number(bar.value),
            )
        )
        if bar.low is not None and bar.high is not None:
            middle = y + ROW / 2
            parts.append(
                format_html(
                    '<path class="whisker" d="M{lo} {a}V{b}M{lo} {m}H{hi}M{hi} {a}V{b}"/>',
                    lo=f"{x(bar.low):.1f}",
                    hi=f"{x(bar.high):.1f}",
                    m=middle,
                    a=middle - 6,
                    b=middle + 6,
                )
            )
        value_text = _number(bar.value) + (f" {bar.note}" if bar.note else "")
        parts.append(
            format_html(
                '<text class="value" x="{}" y="{}">{}</text>',
                f"{max(x(bar.value), x(bar.high or 0)) + 6:.1f}",
                y + ROW / 2 + 4,
                value_text,
            )
        )
    for value, label in thresholds:
        parts.append(
            format_html(
                '<line class="threshold" x1="{x}" x2="{x}" y1="{y0}" y2="{y1}"/>'
                '<text class="threshold-label" x="{x}" y="{ty}" text-anchor="middle">'
                "{label}</text>",
                x=f"{x(value):.1f}",
                y0=TOP - 10,
                y1=axis_y,
                ty=TOP - 14,
                label=label,
            )
        )
    parts.append(mark_safe("</svg>"))  # noqa: S308 -- a literal
    return mark_safe("".join(parts))  # noqa: S308 -- every part went through format_html


def trend_chart(
    series: Sequence[Series],
    periods: Sequence[str],
    *,
    title: str,
    description: str,
    changes: Sequence[tuple[int, str]] = (),
    top: float = 1.0,
    thresholds: Sequence[tuple[float, str]] = (),
    chart_id: str = "trend",
) -> SafeString:
    """One line per series over the periods, with a labelled vertical line where a new model
    version starts, so that a change in fairness after an update shows."""
    values = [value for line in series for _, value in line.points if value is not None]
    top = max([top, *values]) if values else top
    left, right, plot_top, height = 48, 16, 34, 260
    bottom = height - 46
    span = max(len(periods) - 1, 1)

    def x(position: float) -> float:
        return left + (WIDTH - left - right) * position / span

    def y(value: float) -> float:
        return bottom - (bottom - plot_top) * min(value, top) / top

    parts = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" class="bias-chart trend" viewBox="0 0 {} {}" '
            'role="img" aria-labelledby="{}-title {}-desc">'
            '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>',
            WIDTH,
            height + 22 * ((len(series) + 2) // 3),
            chart_id,
            chart_id,
            chart_id,
            title,
            chart_id,
            description,
        )
    ]
    for tick in _ticks(top):
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{y}" y2="{y}"/>'
                '<text class="tick" x="{}" y="{ty}" text-anchor="end">{}</text>',
                left,
                WIDTH - right,
                left - 6,
                f"{tick:g}",
                y=f"{y(tick):.1f}",
                ty=f"{y(tick) + 4:.1f}",
            )
        )
    every = max(1, -(-len(periods) // 6))  # at most six labels: they must not overlap
    for position, period in enumerate(periods):
        if position % every == 0:
            parts.append(
                format_html(
                    '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                    f"{x(position):.1f}",
                    bottom + 16,
                    period,
                )
            )
    for value, label in thresholds:
        parts.append(
            format_html(
                '<line class="threshold" x1="{}" x2="{}" y1="{y}" y2="{y}"/>'
                '<text class="threshold-label" x="{}" y="{ty}" text-anchor="end">{}</text>',
                left,
                WIDTH - right,
                WIDTH - right,
                label,
                y=f"{y(value):.1f}",
                ty=f"{y(value) - 4:.1f}",
            )
        )
    for position, label in changes:
        # Near the right edge the label ends at its line instead of starting there.
        late = x(position) > WIDTH * 0.7
        parts.append(
            format_html(
                '<line class="version-change" x1="{x}" x2="{x}" y1="{}" y2="{}"/>'
                '<text class="version-label" x="{tx}" y="{}" text-anchor="{}">{}</text>',
                plot_top - 8,
                bottom,
                plot_top - 12,
                "end" if late else "start",
                label,
                x=f"{x(position):.1f}",
                tx=f"{x(position) + (-4 if late else 4):.1f}",
            )
        )
    for line in series:
        runs: list[list[tuple[int, float]]] = [[]]
        for position, value in line.points:
            if value is None:
                runs.append([])
            else:
                runs[-1].append((position, value))
        for run in runs:
            if len(run) > 1:
                path = " ".join(
                    f"{'M' if index == 0 else 'L'}{x(p):.1f} {y(v):.1f}"
                    for index, (p, v) in enumerate(run)
                )
                parts.append(
                    format_html('<path class="series" d="{}" stroke="{}"/>', path, line.colour)
                )
            for position, value in run:
                parts.append(
                    format_html(
                        '<circle class="point" cx="{}" cy="{}" r="3" fill="{}">'
                        "<title>{}, {}: {}</title></circle>",
                        f"{x(position):.1f}",
                        f"{y(value):.1f}",
                        line.colour,
                        line.label,
                        periods[position],
                        _number(value),
                    )
                )
    for index, line in enumerate(series):
        lx, ly = left + (index % 3) * 196, height + 4 + 22 * (index // 3)
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="14" height="4" fill="{}"/>'
                '<text class="legend" x="{}" y="{}">{}</text>',
                lx,
                ly,
                line.colour,
                lx + 20,
                ly + 6,
                _shorten(line.label, 28),
            )
        )
    parts.append(mark_safe("</svg>"))  # noqa: S308 -- a literal
    return mark_safe("".join(parts))  # noqa: S308 -- every part went through format_html


def _shorten(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]
