"""Does the confidence map predict the real error, and does the protect mask keep a blob the model removes?

On the synthetic test split (pairs prepared by `deepemhancer-train prepare`, with their half maps and noise-free
targets as MRC files), each map is processed with --preserveHalves by the Python API (same code path as the
command). The output is brought to the target's scale by a least-squares fit inside the model envelope, and the
Spearman correlation between (1 - confidence) and the absolute error is computed over the voxels near the molecule
(the envelope dilated by 4 A), where a user looks. Then a synthetic lipid-like blob (a 5 A Gaussian, as strong as
the protein) is added to both halves beside the molecule and the map is processed with and without a protect mask
around it: the blob's mean output relative to the protein's shows what the model removes and the mask keeps.

    python benchmarks/benchmark_confidence.py --pairs work-data/pairs [--model DIR] [--limit 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from scipy import ndimage, stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from deepemhancer import devices  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(a, b).statistic)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=os.path.join(REPO, "work-data", "pairs"))
    parser.add_argument("--model", help="model folder or file (default: the shipped tightTarget)")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    devices.configure("-1")
    from deepemhancer.api import EnhanceOptions, enhance
    from deepemhancer.io import read_map
    from deepemhancer.models import find_model, load_model
    from deepemhancer.protect import intensity_scale

    model = load_model(find_model("tightTarget", args.model))
    index = json.load(open(os.path.join(args.pairs, "index.json")))
    pairs = [p for p in index["pairs"] if p["split"] == args.split and "mrc" in p][: args.limit]
    rows = []
    for pair in pairs:
        paths = {k: os.path.join(args.pairs, v) for k, v in pair["mrc"].items()}
        h1, grid = read_map(paths["half1"])
        h2, _ = read_map(paths["half2"])
        target, _ = read_map(paths["target_tight"])
        envelope = read_map(paths["envelope"])[0] > 0.5
        voxel = grid.voxel_size[0]
        result = enhance(h1, grid.voxel_size, half2=h2, model=model,
                         options=EnhanceOptions(preserve_halves=True, progress=False))
        a, b = intensity_scale(result.data, target, envelope)
        error = np.abs(a * result.data + b - target)
        near = ndimage.binary_dilation(envelope, iterations=max(1, int(round(4 / voxel))))
        rho = spearman(1.0 - result.confidence[near], error[near])
        cc = float(np.corrcoef(result.data.ravel(), target.ravel())[0, 1])
        cc_in = float(np.corrcoef(((h1 + h2) / 2).ravel(), target.ravel())[0, 1])

        # protect: a lipid-like blob beside the molecule, in both halves
        com = np.array(ndimage.center_of_mass(envelope))
        to_molecule = ndimage.distance_transform_edt(~envelope) * voxel
        idx = np.indices(h1.shape)
        to_face = np.min([np.minimum(i, n - 1 - i) for i, n in zip(idx, h1.shape)], axis=0) * voxel
        candidates = np.argwhere((to_molecule > 7) & (to_molecule < 10) & (to_face > 8))
        if not len(candidates):
            rows.append((pair["name"], pair.get("fsc_resolution"), cc_in, cc, rho, float("nan"), float("nan")))
            continue
        centre = candidates[np.argmin(np.linalg.norm(candidates - com, axis=1))]
        r2 = sum(((i - c) * voxel) ** 2 for i, c in zip(idx, centre))
        protein_level = float(np.percentile(((h1 + h2) / 2)[envelope], 90))
        blob = (protein_level * np.exp(-r2 / (2 * 5.0 ** 2))).astype(np.float32)
        zone = np.clip((8.0 - np.sqrt(r2)) / 2.0, 0, 1).astype(np.float32)
        core = r2 < 4.0 ** 2
        ratios = []
        for protect in (None, zone):
            out = enhance(h1 + blob, grid.voxel_size, half2=h2 + blob, model=model, protect=protect,
                          options=EnhanceOptions(progress=False)).data
            ratios.append(float(out[core].mean() / np.percentile(out[envelope], 90)))
        rows.append((pair["name"], pair.get("fsc_resolution"), cc_in, cc, rho, ratios[0], ratios[1]))
        print(f"{pair['name']}: FSC res {pair.get('fsc_resolution')}, CC input {cc_in:.3f} output {cc:.3f}, "
              f"Spearman(1-confidence, |error|) {rho:.3f}, blob/protein without protect {ratios[0]:.2f}, "
              f"with protect {ratios[1]:.2f}", flush=True)
    print("\n| map | half-map FSC res (A) | CC input | CC output | Spearman(1-conf, abs error) | "
          "blob/protein default | blob/protein protected |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.2f} | {r[6]:.2f} |")
    med = np.nanmedian(np.array([r[2:] for r in rows], dtype=float), axis=0)
    print(f"| **median** | | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} | {med[3]:.2f} | {med[4]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
