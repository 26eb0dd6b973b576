"""benchmarks/quality.py's verdicts and tables: which stylekit runs beat which peer, a table and a
frontier line per pair, and the summary over pairs.

A stylekit run (a strength of the curve, or a --recipes row) beats a peer when it is at or below
the peer on all four figures, ties included, in at most TIME_FRACTION of the peer's wall time.
A peer is dominated on a pair when some strength of the curve beats it."""

from __future__ import annotations

from quality_common import FIGURE_NAMES, FIGURES, TIME_FRACTION
from quality_peers import probe_text


def verdict(row: dict, peer: dict) -> dict:
    """How the row stands against the peer: how many figures at or below, and within the time."""
    at_or_below = sum(row["judge"][k] <= peer["judge"][k] for k in FIGURES)
    in_time = row["wall_s"] <= TIME_FRACTION * peer["wall_s"]
    return {"at_or_below": at_or_below, "all_figures": at_or_below == len(FIGURES), "in_time": in_time,
            "passes": at_or_below == len(FIGURES) and in_time, "time_ratio": round(row["wall_s"] / peer["wall_s"], 4)}


def mark_rows(result: dict) -> None:
    """Each stylekit row's verdict against each peer of its pair, under row['beats'][peer key]."""
    for row in result["curve"] + result["recipes"]:
        row["beats"] = {peer["key"]: verdict(row, peer) for peer in result["peers"]}


def strength_text(row: dict) -> str:
    return f"{row['strength']:g}"


def frontier(result: dict) -> dict[str, dict]:
    """Per peer: the strengths that beat it, and when none does, the closest one (the most
    figures at or below, then within the time, then the least time)."""
    verdicts = {}
    for peer in result["peers"]:
        key = peer["key"]
        winners = [strength_text(row) for row in result["curve"] if row["beats"][key]["passes"]]
        closest = None
        if result["curve"] and not winners:
            near = max(result["curve"], key=lambda r: (r["beats"][key]["at_or_below"], r["beats"][key]["in_time"],
                                                       -r["beats"][key]["time_ratio"]))
            closest = {"strength": strength_text(near), **near["beats"][key]}
        verdicts[key] = {"label": peer["label"], "dominated": bool(winners), "strengths": winners, "closest": closest}
    return verdicts


def frontier_lines(result: dict) -> list[str]:
    lines = []
    for verdict_ in frontier(result).values():
        if verdict_["dominated"]:
            lines.append(f"- {verdict_['label']}: **dominated**, by strength {', '.join(verdict_['strengths'])}")
        elif verdict_["closest"]:
            near = verdict_["closest"]
            lines.append(f"- {verdict_['label']}: **not dominated**; closest: strength {near['strength']} "
                         f"({near['at_or_below']}/4 figures at or below, {near['time_ratio']:.3f} of its time)")
    return lines


def beat_cell(v: dict) -> str:
    """'✓ 0.065' when the row beats the peer; else '3/4, 0.065': figures at or below, time ratio."""
    return f"✓ {v['time_ratio']:.3f}" if v["passes"] else f"{v['at_or_below']}/4, {v['time_ratio']:.3f}"


def md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def pair_table(result: dict) -> str:
    """One pair's markdown table and its frontier lines."""
    peers = result["peers"]
    best = {k: min(p["judge"][k] for p in peers) for k in FIGURES} if peers else {}
    lines = [f"### {result['pair']} at {result['size']}", ""]
    lines += [f"- {probe_text(peer)}" for peer in peers]
    lines += ["", md_row(["run", "wall s", *(FIGURE_NAMES[k] for k in FIGURES), *(f"vs {p['label']}" for p in peers)]),
              md_row(["---"] * (2 + len(FIGURES) + len(peers)))]
    for peer in peers:
        lines.append(md_row([peer["label"], f"{peer['wall_s']:.0f} (est.)", *(f"{peer['judge'][k]:.3f}" for k in FIGURES),
                             *([""] * len(peers))]))
    for row in result["curve"] + result["recipes"]:
        figures = [f"**{row['judge'][k]:.3f}**" if peers and row["judge"][k] <= best[k] else f"{row['judge'][k]:.3f}"
                   for k in FIGURES]
        lines.append(md_row([row["label"], f"{row['wall_s']:.1f}", *figures,
                             *(beat_cell(row["beats"][p["key"]]) for p in peers)]))
    if result["curve"] and peers:
        lines += ["", *frontier_lines(result)]
    return "\n".join(lines)


def summary(results: list[dict]) -> list[str]:
    """Per peer: on how many pairs some strength beats it; per --recipes row: on how many it does."""
    lines = []
    peers = dict.fromkeys((p["key"], p["label"]) for r in results for p in r["peers"])
    curved = [r for r in results if r["curve"]]
    for key, label in peers:
        if curved:
            verdicts = [(r["pair"], frontier(r)[key]) for r in curved if any(p["key"] == key for p in r["peers"])]
            missed = [pair for pair, v in verdicts if not v["dominated"]]
            lines.append(f"- **{label}**: dominated by some strength on **{len(verdicts) - len(missed)} of "
                         f"{len(verdicts)}** pairs" + (f" (not on {', '.join(missed)})" if missed else ""))
        for name in dict.fromkeys(row["label"] for r in results for row in r["recipes"]):
            rows = [row["beats"][key] for r in results for row in r["recipes"] if row["label"] == name
                    and key in row["beats"]]
            count = lambda what: sum(v[what] for v in rows)
            lines.append(f"- {name} against the {label}: all four figures within 1/10 of its time on "
                         f"**{count('passes')} of {len(rows)}** pairs (all four figures: {count('all_figures')}; "
                         f"within the time: {count('in_time')})")
    return lines


def markdown(results: list[dict], meta: dict) -> str:
    head = ["# Quality benchmark: stylekit's strengths against its peers", "",
            f"Machine {meta['machine']}, {meta['threads']} thread(s), {meta['date']}. Lower is better for every "
            "figure (`../shared/bench/judge.py`); **bold**: at or below every peer. In a peer's column, "
            "'3/4, 0.065': three figures at or below the peer's, in 0.065 of its wall time; ✓: all four, in at "
            "most 1/10 of its time. stylekit's wall times are whole processes; a peer's is its loop alone, "
            "estimated from a probe in the same invocation (see benchmarks/quality_peers.py).", "",
            f"    {meta['command']}", ""]
    body = []
    for result in results:
        body += [pair_table(result), ""]
        if result.get("plot"):
            body += [f"![{result['pair']}: the strengths against the peers]({result['plot']['relative']})", ""]
    return "\n".join(head + body + ["## Summary", ""] + summary(results)) + "\n"
