"""Which fast tiling? Each candidate against the original tiling and against the target, on the synthetic test split.

For every test pair (prepared by `deepemhancer-train prepare`: the normalised 1 A input and its tight target), the
shipped model is run once with DeepEMhancer's original tiling (64^3 cubes, stride 16, the reference) and once per
candidate fast tiling given as ``CUBE/STRIDE`` (``a`` suffix: cubes start at the map's first voxel, the default;
without it: cubes centred on the box faces). Printed per map and as medians: CC with the original tiling's output
(whole box and inside the wide target mask), CC with the target (whole box and inside the mask), cubes evaluated
and seconds.

    python benchmarks/benchmark_tiling.py [--pairs work-data/pairs] [--variants 64/32a 64/32 64/48a] [--limit 20]
        [--reference-cache work-data/tiling-reference]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from unittest import mock

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from deepemhancer import devices  # noqa: E402


def cc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def centred_padding(shape, cube, stride):
    """The earlier default: cubes centred on the box faces (symmetric padding)."""
    pads = []
    for n in shape:
        total = max(n + stride, cube)
        padded = cube + int(np.ceil(max(total - cube, 0) / stride)) * stride
        pads.append(((padded - n) // 2, padded - n - (padded - n) // 2))
    return pads


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=os.path.join(REPO, "work-data", "pairs"))
    parser.add_argument("--variants", nargs="+", default=["64/32a", "64/32", "64/48a"])
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--model", help="model folder or file (default: the shipped tightTarget)")
    parser.add_argument("--reference-cache", help="folder keeping the original tiling's outputs (<name>.npy) "
                        "between runs with the same model")
    args = parser.parse_args(argv)
    devices.configure("-1")
    from deepemhancer import tiling
    from deepemhancer.api import EnhanceOptions, enhance
    from deepemhancer.models import find_model, load_model
    from deepemhancer.training.prepare import load_index

    model = load_model(find_model("tightTarget", args.model))
    index = load_index(args.pairs)
    pairs = [p for p in index["pairs"] if p["split"] == "test"][: args.limit]
    variants = [(int(v.split("/")[0]), int(v.split("/")[1].rstrip("a")), v.endswith("a"), v) for v in args.variants]
    results = {v[3]: [] for v in variants}
    reference = []
    for pair in pairs:
        with np.load(os.path.join(args.pairs, pair["file"])) as z:
            data = z["input"].astype(np.float32)
            target = z["target_tight"].astype(np.float32)
            inside = z["mask_wide"] > 0.5
        cached = os.path.join(args.reference_cache, pair["name"] + ".npy") if args.reference_cache else None
        if cached and os.path.exists(cached):
            original = np.load(cached)
        else:
            original = enhance(data, 1.0, model=model,
                               options=EnhanceOptions(tiling="original", progress=False)).data
            if cached:
                os.makedirs(args.reference_cache, exist_ok=True)
                np.save(cached, original)
        reference.append((cc(original, target), cc(original[inside], target[inside])))
        line = [f"{pair['name']} {data.shape[0]}^3: original vs target {reference[-1][0]:.3f}/{reference[-1][1]:.3f}"]
        for cube, stride, aligned, label in variants:
            plan = replace(tiling.TilingPlan.for_mode("fast", cube=cube), stride=stride)
            padding = tiling._fast_padding if aligned else centred_padding
            with mock.patch.object(tiling.TilingPlan, "for_mode", lambda *a, **k: plan), \
                    mock.patch.object(tiling, "_fast_padding", padding):
                start = time.perf_counter()
                result = enhance(data, 1.0, model=model, options=EnhanceOptions(progress=False))
                seconds = time.perf_counter() - start
            out = result.data
            row = (cc(out, original), cc(out[inside], original[inside]), cc(out, target),
                   cc(out[inside], target[inside]), result.cubes_evaluated, seconds)
            results[label].append(row)
            line.append(f"{label}: vs original {row[0]:.3f}/{row[1]:.3f}, vs target {row[2]:.3f}/{row[3]:.3f}, "
                        f"{row[4]} cubes {row[5]:.1f} s")
        print(" | ".join(line), flush=True)
    ref = np.median(np.array(reference), axis=0)
    print(f"\n{len(pairs)} test maps; original tiling vs target: CC {ref[0]:.3f} box, {ref[1]:.3f} in mask\n")
    print("| fast tiling | CC vs original (box) | CC vs original (mask) | CC vs target (box) | CC vs target (mask) | "
          "maps with CC vs original >= 0.99 (box) | cubes | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for label, rows in results.items():
        r = np.array(rows)
        med = np.median(r, axis=0)
        print(f"| {label} | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} | {med[3]:.3f} | "
              f"{int((r[:, 0] >= 0.99).sum())}/{len(r)} | {int(r[:, 4].sum())} | {r[:, 5].sum():.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
