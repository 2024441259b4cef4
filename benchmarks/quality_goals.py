#!/usr/bin/env python
"""Check a quality benchmark run (``benchmark_quality.py --json``) against the model issue's goals, per case set.

    python benchmarks/quality_goals.py work-data/quality.json [--baseline work-data/quality_v1.json]

Goals (the model issue): median in-envelope FSC0.5 gain over the input >= 0.4 A on both simulators; median CC inside
the envelope >= 0.90 on the second simulator; unmasked FSC0.5 better than RELION on >= 80 % of maps and in-envelope
FSC0.5 better than LocScale 2 model-free (where the run has its column) on >= 80 %; on the real maps
(pseudo half maps) a median unmasked FSC0.5 gain >= 0.6 A, CC inside the envelope never below the input's by more
than 0.01, retention >= 85 % (tightTarget; 92 % for wideTarget) with <= 5 % of the output's density outside the
input's. Prints one line per goal with the measured value and whether it is met; with a baseline, its value beside.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

GROUPS = {"synthetic": "our simulator's test split", "sim2": "second simulator", "real": "real maps, pseudo halves"}


def goal_cases(results: list[dict], kind: str) -> list[dict]:
    """The cases of one set (``synthetic``, ``sim2`` or ``real``) that the goals count: those with our row, and of the
    real maps only the half-map inputs."""
    rows = [r for r in results if r["kind"] == kind and "ours" in r["rows"]]
    if kind == "real":  # the deposited maps are already post-processed: the goals are about half-map input
        rows = [r for r in rows if "halves" in r["case"]]
    return rows


def gain(r: dict, key: str) -> float:
    """Our gain over the input in resolution ``key`` of case ``r`` (A; positive = finer)."""
    return r["rows"]["input"][key] - r["rows"]["ours"][key]


def _finest(r: dict) -> float:
    """The finest FSC resolution the output of case ``r`` can reach (A): Nyquist of the map's grid or of the grid
    the network works on (two of its voxels: the output is resampled from it), whichever is coarser."""
    return max(r["nyquist"], r.get("network_nyquist") or 0.0)


def _nyquist_note(rows: list[dict]) -> str:
    """Which cases cannot gain 0.4 A at all: an input whose in-envelope FSC0.5 already lies within 0.4 A of the finest
    resolution its output can hold (:func:`_finest`) caps that case's gain below the goal whatever the method does.
    Informational: the goal's verdict stays the median over every case. Empty for runs that did not record Nyquist."""
    if any("nyquist" not in r for r in rows):
        return ""
    capped = [r for r in rows if r["rows"]["input"]["FSC0.5 env"] - _finest(r) < 0.4]
    if not capped:
        return ""
    reached = sum(r["rows"]["ours"]["FSC0.5 env"] <= _finest(r) + 0.01 for r in capped)
    rest = [gain(r, "FSC0.5 env") for r in rows if r not in capped]
    rest_text = f"; median over the other {len(rest)}: {np.median(rest):.2f} A" if rest else ""
    return (f" ({len(capped)} of {len(rows)} inputs lie within 0.4 A of the finest resolution their output can hold, "
            f"Nyquist of the map or of the network's grid; ours reaches it on {reached}{rest_text})")


def measures(results: list[dict], retention_goal: float) -> list[tuple[str, float | None, str, bool | None]]:
    """(goal, value, formatted value, met) for every goal that the run has data for."""
    out = []
    for kind in ("synthetic", "sim2"):
        rows = goal_cases(results, kind)
        if rows:
            median_gain = float(np.median([gain(r, "FSC0.5 env") for r in rows]))
            out.append((f"{GROUPS[kind]}: median in-envelope FSC0.5 gain >= 0.4 A (n={len(rows)})", median_gain,
                        f"{median_gain:.2f} A" + _nyquist_note(rows), median_gain >= 0.4))
    rows = goal_cases(results, "sim2")
    if rows:
        cc = float(np.median([r["rows"]["ours"]["CC env"] for r in rows]))
        out.append((f"{GROUPS['sim2']}: median CC in envelope >= 0.90 (n={len(rows)})", cc, f"{cc:.3f}", cc >= 0.90))
    rows = [r for r in results if "RELION" in r["rows"] and "ours" in r["rows"]]
    if rows:
        better = float(np.mean([r["rows"]["ours"]["FSC0.5"] < r["rows"]["RELION"]["FSC0.5"] for r in rows]))
        out.append((f"unmasked FSC0.5 better than RELION on >= 80 % of maps (n={len(rows)})", better,
                    f"{100 * better:.0f} %", better >= 0.8))
    rows = [r for r in results if "LocScale" in r["rows"] and "ours" in r["rows"]]
    if rows:
        wins = [(r["kind"], r["rows"]["ours"]["FSC0.5 env"] < r["rows"]["LocScale"]["FSC0.5 env"]) for r in rows]
        better = float(np.mean([won for _, won in wins]))
        counts = {k: [won for kind, won in wins if kind == k] for k in GROUPS}
        per_set = ", ".join(f"{GROUPS[k].split(',')[0]} {sum(c)}/{len(c)}" for k, c in counts.items() if c)
        out.append((f"in-envelope FSC0.5 better than LocScale 2 model-free on >= 80 % of maps (n={len(rows)})", better,
                    f"{100 * better:.0f} % ({per_set})", better >= 0.8))
    rows = goal_cases(results, "real")
    if rows:
        median_gain = float(np.median([gain(r, "FSC0.5") for r in rows]))
        ceilings = [r["rows"]["input"]["FSC0.5"] - r["rows"]["signal"]["FSC0.5"] for r in rows if "signal" in r["rows"]]
        ceiling = (f" (ceiling, the deposited map's own gain: median {np.median(ceilings):.2f} A, per map "
                   + ", ".join(f"{c:.2f}" for c in ceilings) + ")") if len(ceilings) == len(rows) else ""
        out.append((f"{GROUPS['real']}: median unmasked FSC0.5 gain >= 0.6 A (n={len(rows)})", median_gain,
                    f"{median_gain:.2f} A (per map " + ", ".join(f"{gain(r, 'FSC0.5'):.2f}" for r in rows) + ")"
                    + ceiling,
                    median_gain >= 0.6))
        drop = float(max(r["rows"]["input"]["CC env"] - r["rows"]["ours"]["CC env"] for r in rows))
        out.append((f"{GROUPS['real']}: CC in envelope never below the input's by > 0.01", drop,
                     f"largest drop {drop:+.3f}", drop <= 0.01))
        signal = [r["rows"]["signal"] for r in rows if "signal" in r["rows"]]
        signal = signal if len(signal) == len(rows) else []   # the noise-free deposited maps score these too
        ceiling = " (the deposited maps themselves: {})"
        kept = float(np.median([r["rows"]["ours"]["retention"] for r in rows]))
        kept_ceiling = (ceiling.format(f"median {100 * np.median([g['retention'] for g in signal]):.1f} %")
                        if signal else "")
        out.append((f"{GROUPS['real']}: median retention >= {100 * retention_goal:.0f} %", kept,
                    f"{100 * kept:.1f} % (min {100 * min(r['rows']['ours']['retention'] for r in rows):.1f} %)"
                    f"{kept_ceiling}", kept >= retention_goal))
        outside = float(max(r["rows"]["ours"]["outside"] for r in rows))
        outside_ceiling = ceiling.format(f"largest {100 * max(g['outside'] for g in signal):.1f} %") if signal else ""
        out.append((f"{GROUPS['real']}: output density outside the input's <= 5 %", outside,
                    f"largest {100 * outside:.1f} %{outside_ceiling}", outside <= 0.05))
        atoms = float(np.median([r["rows"]["ours"]["atoms inside"] for r in rows]))
        atoms_in = float(np.median([r["rows"]["input"]["atoms inside"] for r in rows]))
        out.append((f"{GROUPS['real']}: median model atoms inside the contour (input {100 * atoms_in:.1f} %)", atoms,
                    f"{100 * atoms:.1f} %", None))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="JSON written by benchmark_quality.py --json")
    p.add_argument("--baseline", help="another run's JSON (e.g. the previous model) to print beside")
    p.add_argument("--retention-goal", type=float, default=0.85, help="0.85 for tightTarget, 0.92 for wideTarget")
    args = p.parse_args(argv)
    with open(args.results) as f:
        current = measures(json.load(f), args.retention_goal)
    baseline = {}
    if args.baseline:
        with open(args.baseline) as f:
            baseline = {goal: text for goal, _, text, _ in measures(json.load(f), args.retention_goal)}
    print("| goal | value | met |" + (" baseline |" if baseline else ""))
    print("|---|---|---|" + ("---|" if baseline else ""))
    for goal, _, text, met in current:
        verdict = "-" if met is None else ("yes" if met else "**no**")
        print(f"| {goal} | {text} | {verdict} |" + (f" {baseline.get(goal, 'n/a')} |" if baseline else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
