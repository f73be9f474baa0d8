"""A map of Japan for the dashboard, drawn from the registry's coordinates: every municipality
of japancode's list (全国地方公共団体コード with latitude and longitude, MIT) as a grey dot — the
islands' outline — and one circle per prefecture, its area in proportion to a count. Server-side
SVG like the other plots (api.console.charts)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from functools import lru_cache
from html import escape
from importlib import resources

from markupsafe import Markup

from api.console.charts import PALETTE

# The frame: 122–146°E, 24–46°N, an equirectangular projection squeezed by cos(35°).
WEST, EAST, SOUTH, NORTH = 122.5, 146.0, 24.0, 45.8
_SQUEEZE = math.cos(math.radians(35))


@lru_cache(maxsize=1)
def municipalities() -> tuple[tuple[str, float, float], ...]:
    """(6-digit code, latitude, longitude) of every municipality japancode lists."""
    text = resources.files("japancode").joinpath("data").joinpath(
        "municipalities.json").read_text("utf-8")
    return tuple((str(row["lgcode"]).zfill(6), float(row["lat"]), float(row["lng"]))
                 for row in json.loads(text))


@lru_cache(maxsize=1)
def prefecture_points() -> Mapping[str, tuple[float, float]]:
    """Each prefecture's place on the map: the median of its municipalities' coordinates (a
    median, so that Tokyo's Ogasawara islands, 1,000 km south, do not pull it to sea)."""
    by_prefecture: dict[str, list[tuple[float, float]]] = {}
    for code, lat, lng in municipalities():
        by_prefecture.setdefault(code[:2], []).append((lat, lng))
    return {code: (statistics.median(p[0] for p in points),
                   statistics.median(p[1] for p in points))
            for code, points in by_prefecture.items()}


def japan(counts: Mapping[str, int], names: Mapping[str, str], *, title: str,
          width: int = 520) -> Markup:
    """The map with a circle per prefecture code in ``counts``, labelled from ``names``."""
    height = int(width * (NORTH - SOUTH) / ((EAST - WEST) * _SQUEEZE))

    def xy(lat: float, lng: float) -> tuple[float, float]:
        return ((lng - WEST) / (EAST - WEST) * width, (NORTH - lat) / (NORTH - SOUTH) * height)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{escape(title)}" class="chart map">',
           f"<title>{escape(title)}</title>",
           f'<rect width="{width}" height="{height}" fill="#f4f8fb"/>']
    for _, lat, lng in municipalities():
        x, y = xy(lat, lng)
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.2" fill="#b8c2cc"/>')
    most = max(counts.values(), default=0) or 1
    points = prefecture_points()
    for code, count in sorted(counts.items()):
        if count <= 0 or code not in points:
            continue
        x, y = xy(*points[code])
        radius = 3 + 22 * math.sqrt(count / most)  # area, not radius, follows the count
        label = f"{names.get(code, code)}: {count}"
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{PALETTE[0]}" '
                   f'fill-opacity="0.55" stroke="{PALETTE[0]}" class="prefecture" '
                   f'data-prefecture="{escape(code)}"><title>{escape(label)}</title></circle>')
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every label above went through escape()
