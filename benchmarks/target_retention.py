#!/usr/bin/env python
"""The retention and outside density of the training targets themselves: what a model that reproduced its target
exactly would score on the model issue's retention (>= 85 % tightTarget, >= 92 % wideTarget) and outside (<= 5 %)
goals.

For each pair of a prepared folder (``deepemhancer-train prepare``), the pair's input (the half-map average on the
1 A training grid, as the network sees it) is set against each target on the same grid with the evaluation's own
metric (:func:`deepemhancer.evaluation.retention.retention`: both low-passed at 6 A, the input's significant voxels
against the target's contour of equal volume; outside = the target's density farther than 3 A from them). The
``truth`` column is the pair's ground-truth MRC (where ``--mrc-splits`` wrote one): the target density T before any
mask (polymer only, each atom at ``B_t = 2 d_i^2``), Fourier-resampled from the pair's own grid.

    python benchmarks/target_retention.py --pairs work-data/pairs-v2 [--split test] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from deepemhancer.evaluation.retention import retentions  # noqa: E402
from deepemhancer.io import read_map  # noqa: E402
from deepemhancer.resample import resample_to_shape  # noqa: E402

TARGETS = (("tight", "target_tight"), ("wide", "target_wide"), ("sharp (highRes)", "target_sharp"))
COLUMNS = tuple(name for name, _ in TARGETS) + ("truth",)
TRAINING_VOXEL = 1.0   # A: the grid of the pairs' .npz arrays


def pair_scores(folder: str, entry: dict) -> dict[str, tuple[float, float]]:
    """{column: (retention, outside)} of one pair's targets (and its noise-free truth) against its input."""
    arrays = np.load(os.path.join(folder, entry["file"]))
    given = arrays["input"].astype(np.float32)
    maps = {name: arrays[key].astype(np.float32) for name, key in TARGETS}
    truth_file = entry.get("mrc", {}).get("groundtruth")
    if truth_file:
        maps["truth"] = resample_to_shape(read_map(os.path.join(folder, truth_file))[0].astype(np.float32),
                                          given.shape)
    return {name: (s.retention, s.outside) for name, s in retentions(given, maps, TRAINING_VOXEL).items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", required=True, help="prepared folder with index.json")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0, help="at most this many pairs (0: all of the split)")
    args = p.parse_args(argv)
    with open(os.path.join(args.pairs, "index.json")) as fh:
        entries = [e for e in json.load(fh)["pairs"] if e.get("split") == args.split]
    if args.limit:
        entries = entries[:args.limit]
    if not entries:
        print(f"no pairs of split {args.split!r} in {args.pairs}", file=sys.stderr)
        return 2
    print("| pair | micelle | depositor mask | " + " | ".join(f"{c}: retention / outside" for c in COLUMNS) + " |")
    print("|---" * (3 + len(COLUMNS)) + "|")
    rows = []
    for entry in entries:
        scores = pair_scores(args.pairs, entry)
        rows.append([scores.get(c, (np.nan, np.nan)) for c in COLUMNS])   # no ground-truth MRC: no truth column
        params = entry.get("params", {})
        print(f"| {entry['name']} | {params.get('micelle', '-')} | {params.get('depositor_mask', '-')} | "
              + " | ".join(f"{r * 100:.1f} / {o * 100:.1f} %" for r, o in rows[-1]) + " |", flush=True)
    medians = np.nanmedian(np.array(rows, dtype=float), axis=0)
    print(f"| **median** (n={len(rows)}) | | | " + " | ".join(f"{r * 100:.1f} / {o * 100:.1f} %" for r, o in medians)
          + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
