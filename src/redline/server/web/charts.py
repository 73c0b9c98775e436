"""Charts as inline SVG, drawn on the server (no script, no style attribute: colours come from
classes in the stylesheet, so the strict CSP holds)."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

W, H = 640, 180  # the viewBox; the SVG scales to its container
PAD_L, PAD_R, PAD_T, PAD_B = 52, 12, 12, 26


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 2.5, 5, 10):
        magnitude = 10 ** (len(str(int(value))) - 1)
        candidate = step * magnitude
        if candidate >= value:
            return float(candidate)
    return float(value)


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        from redline.server.web.format import duration

        return duration(value)
    if unit == "%":
        return f"{value:.0f}%"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def line_chart(values: list[float | None], labels: list[str], *, title: str, unit: str = "",
               y_max: float | None = None, css: str = "series") -> Markup:
    """A line over time; each point has a tooltip (label: value)."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    top = y_max if y_max is not None else _nice_max(max((v for _, v in points), default=0))
    inner_w, inner_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    n = max(len(values) - 1, 1)

    def x(i: int) -> float:
        return PAD_L + (inner_w * i / n if len(values) > 1 else inner_w / 2)

    def y(v: float) -> float:
        return PAD_T + inner_h - (inner_h * v / top if top else 0)

    parts = [(f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
              f'aria-label="{escape(title)}" preserveAspectRatio="none">'),
             f"<title>{escape(title)}</title>"]
    for fraction in (0, 0.5, 1):
        gy = y(top * fraction)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{gy:.1f}" '
                     f'y2="{gy:.1f}"/><text class="axis" x="{PAD_L - 6}" y="{gy + 4:.1f}" '
                     f'text-anchor="end">{escape(_fmt(top * fraction, unit))}</text>')
    if labels:
        parts.append(f'<text class="axis" x="{PAD_L}" y="{H - 6}">{escape(labels[0])}</text>')
        if len(labels) > 1:
            parts.append(f'<text class="axis" x="{W - PAD_R}" y="{H - 6}" text-anchor="end">'
                         f"{escape(labels[-1])}</text>")
    if not points:
        parts.append(f'<text class="empty" x="{W / 2}" y="{H / 2}" text-anchor="middle">'
                     "No data yet</text>")
    else:
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in points)
        if len(points) > 1:
            parts.append(f'<polyline class="{css}" points="{coords}"/>')
        for i, v in points:
            label = labels[i] if i < len(labels) else ""
            parts.append(f'<circle class="{css}-dot" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3">'
                         f"<title>{escape(label)}: {escape(_fmt(v, unit))}</title></circle>")
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(values: list[float], labels: list[str], classes: list[str], *, title: str,
              unit: str = "ms", links: list[str] | None = None) -> Markup:
    """One bar per item (e.g. a test's durations, oldest left), coloured by class."""
    top = _nice_max(max(values, default=0))
    inner_w, inner_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = inner_w / max(len(values), 1)
    width = max(2.0, slot * 0.7)
    parts = [(f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
              f'aria-label="{escape(title)}" preserveAspectRatio="none">'),
             f"<title>{escape(title)}</title>"]
    for fraction in (0, 0.5, 1):
        gy = PAD_T + inner_h - inner_h * fraction
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{gy:.1f}" '
                     f'y2="{gy:.1f}"/><text class="axis" x="{PAD_L - 6}" y="{gy + 4:.1f}" '
                     f'text-anchor="end">{escape(_fmt(top * fraction, unit))}</text>')
    if not values:
        parts.append(f'<text class="empty" x="{W / 2}" y="{H / 2}" text-anchor="middle">'
                     "No data yet</text>")
    for i, value in enumerate(values):
        height = max(1.0, inner_h * value / top) if top else 1.0
        bx = PAD_L + slot * i + (slot - width) / 2
        by = PAD_T + inner_h - height
        rect = (f'<rect class="bar {escape(classes[i])}" x="{bx:.1f}" y="{by:.1f}" '
                f'width="{width:.1f}" height="{height:.1f}"><title>{escape(labels[i])}: '
                f"{escape(_fmt(value, unit))}</title></rect>")
        if links:
            rect = f'<a href="{escape(links[i])}">{rect}</a>'
        parts.append(rect)
    parts.append("</svg>")
    return Markup("".join(parts))


def rate_bar(passed: int, failed: int, flaky: int, skipped: int) -> Markup:
    """A stacked bar of a run's outcomes (widths as SVG attributes, not styles)."""
    total = passed + failed + flaky + skipped
    label = (f"{passed} passed, {failed} failed, {flaky} flaky, {skipped} skipped"
             if total else "no tests")
    parts = [(f'<svg class="ratebar" viewBox="0 0 100 8" preserveAspectRatio="none" '
              f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'),
             '<rect class="rb-empty" width="100" height="8"/>']
    x = 0.0
    for css, value in (("rb-passed", passed), ("rb-flaky", flaky), ("rb-failed", failed),
                       ("rb-skipped", skipped)):
        if total and value:
            width = 100 * value / total
            parts.append(f'<rect class="{css}" x="{x:.2f}" width="{width:.2f}" height="8"/>')
            x += width
    parts.append("</svg>")
    return Markup("".join(parts))
