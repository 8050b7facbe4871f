#!/usr/bin/python3
"""A small line-chart writer: series of (x, y) points as a standalone SVG file, stdlib only,
so bench/run-all draws its charts without gnuplot or matplotlib.

  from plot_svg import Series, line_chart
  line_chart("out.svg", "title", "concurrency", "tok/s", [Series("dpserve", [(1, 10), (8, 35)])], log_x=True)
"""
import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

# Colour-blind-safe palette (Okabe-Ito); dashes tell series apart in print too.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
DASHES = ["", "6,3", "2,3", "8,3,2,3"]


@dataclass
class Series:
    name: str
    points: list  # [(x, y)], y may be None for a missing point
    colour: str = ""
    dash: str = ""
    marker: str = "circle"  # circle, square, triangle
    extra: dict = field(default_factory=dict)


def _nice_ticks(lo, hi, n=5):
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 0.5:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 10000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _marker(kind, x, y, colour):
    if kind == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}"/>'
    if kind == "triangle":
        return (f'<polygon points="{x:.1f},{y - 4.5:.1f} {x - 4:.1f},{y + 3:.1f} {x + 4:.1f},{y + 3:.1f}" '
                f'fill="{colour}"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>'


def line_chart(path, title, x_label, y_label, series, log_x=False, log_y=False, subtitle="", width=720, height=440):
    """Writes one chart. With log_x the x ticks are the data's own x values (e.g. 1, 8, 16, 64)."""
    pts = [(x, y) for s in series for x, y in s.points if y is not None]
    if not pts:
        raise ValueError(f"{path}: no data points")
    # The legend sits right of the plot; widen the picture so the longest name fits.
    legend_w = 58 + int(6.8 * max(len(s.name) for s in series))
    width += max(0, legend_w - 200)
    left, right, top, bottom = 78, max(200, legend_w), 58 if subtitle else 44, 56
    pw, ph = width - left - right, height - top - bottom
    xs = sorted({x for x, _ in pts})
    ys = [y for _, y in pts]

    if log_x:
        lx0, lx1 = math.log2(xs[0]), math.log2(xs[-1])
        if lx1 == lx0:
            lx0, lx1 = lx0 - 1, lx1 + 1
        pad = 0.06 * (lx1 - lx0)
        fx = lambda x: left + (math.log2(x) - lx0 + pad) / (lx1 - lx0 + 2 * pad) * pw
        x_ticks = xs
    else:
        x_ticks = _nice_ticks(min(xs + [0]), max(xs))
        fx = lambda x: left + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * pw
    if log_y:
        pos = [y for y in ys if y > 0]
        y_lo, y_hi = math.floor(math.log10(min(pos))), math.ceil(math.log10(max(pos)))
        if y_hi == y_lo:
            y_hi += 1
        y_ticks = [10 ** e for e in range(y_lo, y_hi + 1)]
        fy = lambda y: top + ph - (math.log10(max(y, 10 ** y_lo)) - y_lo) / (y_hi - y_lo) * ph
    else:
        y_ticks = _nice_ticks(0, max(ys) * 1.05)
        fy = lambda y: top + ph - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    if subtitle:
        out.append(f'<text x="{left}" y="40" font-size="11" fill="#555">{escape(subtitle)}</text>')
    for t in y_ticks:
        y = fy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in x_ticks:
        x = fx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 14}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(18,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f'{escape(y_label)}</text>')

    for i, s in enumerate(series):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        dash = s.dash if s.dash else ""
        good = [(fx(x), fy(y)) for x, y in sorted(s.points) if y is not None and (not log_y or y > 0)]
        if len(good) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in good)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, y in good:
            out.append(_marker(s.marker, x, y, colour))
        ly = top + 10 + i * 20
        lx = left + pw + 14
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        out.append(_marker(s.marker, lx + 12, ly, colour))
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{escape(s.name)}</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
