#!/usr/bin/env python
"""The shipped models' headline numbers, computed from their evaluations, so that no text quotes a stale figure.

Each shipped model's metadata names its evaluation runs (``training.evaluations``: role -> JSON written by
``benchmarks/benchmark_quality.py --json``, relative to the repository): ``main`` (test split, second simulator,
real maps) and, where measured, ``sim2_highres`` (second simulator at 2.2-3.0 A and fine voxels). From them this
script computes the figures that the README's model paragraph and the Scipion form's help quote, and writes

* ``deepemhancer/models/measured.json``: name -> formatted figure (what the protocol's help is formatted with);
* the README's block between ``.. measured: begin`` and ``.. measured: end``, rendered from :data:`README_BLOCK`.

    python benchmarks/shipped_numbers.py           # rewrite both after shipping a model
    python benchmarks/shipped_numbers.py --check   # exit 1 if either is stale (run by the engine tests)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality_goals import gain, goal_cases  # noqa: E402  (the goals' case selection: half-map input for real maps)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "deepemhancer", "models")
MEASURED_JSON = os.path.join(MODELS, "measured.json")
README = os.path.join(ROOT, "README.rst")
BEGIN, END = ".. measured: begin", ".. measured: end"
KINDS = ("tightTarget", "wideTarget", "highRes", "masked")
WIDTH = 118  # the README's line length

README_BLOCK = """\
On the 10 synthetic test maps the shipped tightTarget reaches a median CC of {tight_test_cc} with the ground truth
(input {input_test_cc}, RELION's ``relion_postprocess`` {relion_test_cc}) and improves the FSC0.5 inside the molecule
by a median {tight_test_gain} A; on {sim2_count} maps of a second, independent simulator it beats RELION (unmasked
FSC0.5) on {tight_sim2_relion_wins} and LocScale 2 model-free (FSC0.5 in the envelope) on {tight_sim2_locscale_wins}
(median gain {tight_sim2_gain} A, CC {tight_sim2_cc_env} in the envelope); on three real maps made into noisy half
maps it reaches an unmasked FSC0.5 against the fitted model of {tight_real_fsc} A (input {input_real_fsc} A), beats
LocScale's in-envelope FSC on {tight_real_locscale_wins}, keeps a median {tight_real_retention} % of the input's
significant density and {tight_real_atoms} % of the model's atoms inside its contour. highRes, advised for maps better
than 3 A (better than tightTarget inside the envelope on {highres_sim2hr_wins} simulated maps at 2.2-3.0 A and at 3-6
A on {highres_sim2_wins}), reaches {highres_real_env_fsc} A in the envelope on the real maps (LocScale
{locscale_real_env_fsc} A). wideTarget keeps a median {wide_test_retention} % of the significant density of the synthetic test maps, which
carry unmodelled micelles, lipids and blobs (tightTarget {tight_test_retention} %), and {wide_real_atoms} % of the
model's atoms inside its contour on the real maps.
``masked`` (what ``-m mask.mrc`` runs), given RELION's automatic mask, reaches {masked_real_fsc} A on those maps and
a CC of {masked_sim2_cc_env} in the envelope on the second simulator."""


def _load(path: str) -> list[dict]:
    with open(os.path.join(ROOT, path)) as f:
        return json.load(f)


def evaluations() -> dict[str, dict[str, list[dict]]]:
    """kind -> role -> the evaluation's cases, as the shipped models' metadata names them."""
    out = {}
    for kind in KINDS:
        with open(os.path.join(MODELS, f"deepemhancer_{kind}.json")) as f:
            named = json.load(f)["training"].get("evaluations") or {}
        out[kind] = {role: _load(path) for role, path in named.items()}
    return out


def _median(rows, method, key, scale=1.0, digits=3) -> str:
    return f"{np.median([r['rows'][method][key] for r in rows]) * scale:.{digits}f}"


def _per_map(rows, method, key) -> str:
    return " / ".join(f"{r['rows'][method][key]:.2f}" for r in rows)


def _range(rows, key) -> str:
    values = [100 * r["rows"]["ours"][key] for r in rows]
    return f"{min(values):.1f}-{max(values):.1f}"


def _wins(rows, key, other, other_rows=None) -> str:
    """'k of n': cases where ours has the finer ``key`` than ``other`` (another method, or the same case in
    ``other_rows``, another model's run on identical inputs)."""
    if other_rows is not None:
        theirs = {r["case"]: r["rows"]["ours"][key] for r in other_rows}
        pairs = [(r["rows"]["ours"][key], theirs[r["case"]]) for r in rows if r["case"] in theirs]
    else:
        pairs = [(r["rows"]["ours"][key], r["rows"][other][key]) for r in rows if other in r["rows"]]
    return f"{sum(a < b for a, b in pairs)} of {len(pairs)}"


def _median_gain(rows) -> str:
    return f"{np.median([gain(r, 'FSC0.5 env') for r in rows]):.2f}"


def measured(evals: dict[str, dict[str, list[dict]]]) -> dict[str, str]:
    """The named figures (formatted strings) that the README and the protocol quote."""
    tight, high = evals["tightTarget"]["main"], evals["highRes"]["main"]
    test, sim2, real = goal_cases(tight, "synthetic"), goal_cases(tight, "sim2"), goal_cases(tight, "real")
    high_real = goal_cases(high, "real")
    emd20026 = [r for r in real if "20026" in r["case"]]
    return {
        "tight_test_cc": _median(test, "ours", "CC"), "input_test_cc": _median(test, "input", "CC"),
        "relion_test_cc": _median(test, "RELION", "CC"), "tight_test_gain": _median_gain(test),
        "tight_test_retention": _median(test, "ours", "retention", 100, 1),
        "wide_test_retention": _median(goal_cases(evals["wideTarget"]["main"], "synthetic"), "ours", "retention",
                                       100, 1),
        "sim2_count": str(len(sim2)), "tight_sim2_gain": _median_gain(sim2),
        "tight_sim2_cc_env": _median(sim2, "ours", "CC env"),
        "tight_sim2_relion_wins": _wins(sim2, "FSC0.5", "RELION"),
        "tight_sim2_locscale_wins": _wins(sim2, "FSC0.5 env", "LocScale"),
        "tight_real_fsc": _per_map(real, "ours", "FSC0.5"), "input_real_fsc": _per_map(real, "input", "FSC0.5"),
        "tight_real_locscale_wins": _wins(real, "FSC0.5 env", "LocScale"),
        "tight_real_retention": _median(real, "ours", "retention", 100, 1),
        "tight_real_atoms": _range(real, "atoms inside"),
        "tight_20026_fsc": _per_map(emd20026, "ours", "FSC0.5"),
        "highres_20026_fsc": _per_map([r for r in high_real if "20026" in r["case"]], "ours", "FSC0.5"),
        "locscale_20026_fsc": _per_map(emd20026, "LocScale", "FSC0.5"),
        "highres_real_env_fsc": _per_map(high_real, "ours", "FSC0.5 env"),
        "locscale_real_env_fsc": _per_map(high_real, "LocScale", "FSC0.5 env"),
        "highres_sim2_wins": _wins(goal_cases(high, "sim2"), "FSC0.5 env", None, sim2),
        "highres_sim2hr_wins": _wins(goal_cases(evals["highRes"]["sim2_highres"], "sim2"), "FSC0.5 env", None,
                                     goal_cases(evals["tightTarget"]["sim2_highres"], "sim2")),
        "wide_real_atoms": _range(goal_cases(evals["wideTarget"]["main"], "real"), "atoms inside"),
        "masked_real_fsc": _per_map(goal_cases(evals["masked"]["main"], "real"), "ours", "FSC0.5"),
        "masked_sim2_cc_env": _median(goal_cases(evals["masked"]["main"], "sim2"), "ours", "CC env"),
    }


def readme_with(block: str, text: str) -> str:
    """``text`` (the README) with the lines between the markers replaced by ``block``."""
    head, sep, rest = text.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END + "\n")
    if not sep or not sep2:
        raise SystemExit(f"{README}: the markers '{BEGIN}' and '{END}' (each on its own line) are missing")
    return f"{head}{BEGIN}\n\n{block}\n\n{END}\n{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is stale")
    args = p.parse_args(argv)
    numbers = measured(evaluations())
    expected = {MEASURED_JSON: json.dumps(numbers, indent=1, sort_keys=True) + "\n"}
    with open(README) as f:
        block = textwrap.fill(" ".join(README_BLOCK.format(**numbers).split()), WIDTH, break_on_hyphens=False)
        expected[README] = readme_with(block, f.read())
    stale = []
    for path, text in expected.items():
        current = open(path).read() if os.path.exists(path) else None
        if current != text:
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                with open(path + ".tmp", "w") as f:
                    f.write(text)
                os.replace(path + ".tmp", path)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python benchmarks/shipped_numbers.py", file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(stale)) if stale else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
