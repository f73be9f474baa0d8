"""The dashboard's plots, drawn on the server as SVG: no script, no library, nothing loaded from
elsewhere (the console's Content-Security-Policy allows none of it). Every label is escaped;
colours are presentation attributes, not inline styles, which the policy would refuse."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

# Okabe–Ito: told apart by people with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _ticks(top: int) -> list[int]:
    if top <= 0:
        return [0]
    step = max(1, _nice(top / 4))
    return list(range(0, top + step, step))


def _nice(value: float) -> int:
    magnitude = 10 ** max(0, len(str(int(value))) - 1)
    for factor in (1, 2, 5, 10):
        if value <= factor * magnitude:
            return int(factor * magnitude)
    return int(10 * magnitude)


def stacked_columns(labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], *,
                    title: str, width: int = 760, height: int = 260) -> Markup:
    """Columns per label, each stacked from ``series`` (name, one value per label)."""
    left, right, top, bottom = 44, 12, 24, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    ticks = _ticks(max(totals, default=0))
    scale = plot_h / (ticks[-1] or 1)
    slot = plot_w / max(1, len(labels))
    bar = max(1.0, slot * 0.7)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{escape(title)}" class="chart">',
           f"<title>{escape(title)}</title>"]
    for tick in ticks:
        y = top + plot_h - tick * scale
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#ddd"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'{_FONT}>{tick}</text>')
    every = max(1, len(labels) // 10)  # at most about ten labels under the axis
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        base = float(top + plot_h)
        for s, (name, values) in enumerate(series):
            h = values[i] * scale
            if h > 0:
                base -= h
                out.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" '
                           f'height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                           f"<title>{escape(label)} {escape(name)}: {values[i]}</title></rect>")
        if i % every == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 14}" '
                       f'text-anchor="middle" {_FONT}>{escape(label)}</text>')
    out += _legend([name for name, _ in series], left, height - 18)
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every label above went through escape()


def lines(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *,
          title: str, width: int = 760, height: int = 260) -> Markup:
    """A line per series (name, one value per label; None: no point there)."""
    left, right, top, bottom = 44, 12, 24, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    top_value = max(values, default=0.0)
    # Ticks on whole numbers, or on tenths and hundredths for the small values (milliseconds).
    unit = 1.0 if top_value >= 4 else 0.1 if top_value >= 0.4 else 0.01
    steps = _ticks(int(-(-top_value // unit)))
    ticks = [t * unit for t in steps]
    scale = plot_h / (ticks[-1] or 1)
    slot = plot_w / max(1, len(labels))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{escape(title)}" class="chart">',
           f"<title>{escape(title)}</title>"]
    for tick in ticks:
        y = top + plot_h - tick * scale
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#ddd"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'{_FONT}>{tick:g}</text>')
    every = max(1, len(labels) // 10)
    for i, label in enumerate(labels):
        if i % every == 0:
            out.append(f'<text x="{left + (i + 0.5) * slot:.1f}" y="{top + plot_h + 14}" '
                       f'text-anchor="middle" {_FONT}>{escape(label)}</text>')
    for s, (name, points) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        run: list[str] = []
        for i, value in enumerate(points):
            if value is None:
                continue
            x, y = left + (i + 0.5) * slot, top + plot_h - value * scale
            run.append(f"{x:.1f},{y:.1f}")
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                       f"<title>{escape(labels[i])} {escape(name)}: {value:.3f}</title>"
                       "</circle>")
        if len(run) > 1:
            out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                       'stroke-width="1.5"/>')
    out += _legend([name for name, _ in series], left, height - 18)
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every label above went through escape()


def bars(rows: Sequence[tuple[str, int]], *, title: str, width: int = 760) -> Markup:
    """One horizontal bar per (label, value)."""
    left, right, row_h, top = 170, 48, 18, 8
    height = top * 2 + row_h * max(1, len(rows))
    most = max((v for _, v in rows), default=0) or 1
    scale = (width - left - right) / most
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{escape(title)}" class="chart">',
           f"<title>{escape(title)}</title>"]
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" {_FONT}>'
                   f"{escape(label)}</text>"
                   f'<rect x="{left}" y="{y + 2}" width="{max(0.0, value * scale):.1f}" '
                   f'height="{row_h - 5}" fill="{PALETTE[0]}"/>'
                   f'<text x="{left + value * scale + 4:.1f}" y="{y + 12}" {_FONT}>{value}</text>')
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every label above went through escape()


def _legend(names: Sequence[str], x: int, y: int) -> list[str]:
    out = []
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" '
                   f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{x + 14}" y="{y}" {_FONT}>'
                   f"{escape(name)}</text>")
        x += 24 + 7 * len(name) + (7 * sum(1 for ch in name if ord(ch) > 0x2000))
    return out
