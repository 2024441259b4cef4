"""Where the density a map loses lies (issue 15's retention): at the rim of the input's significant region, or deep
inside it (an erased region)?

For every real pseudo-half-map case of ``benchmark_quality.py`` (../shared/data/real: the deposited map blurred by
B = 100 A^2, noise added, split in two), each kind's output from the two halves and the deposited map itself are
scored as ``evaluation.retention`` does (the input's significant 6 A region against the map's own contour enclosing
the same volume); the voxels of that region the map misses are then split by their depth below the region's rim and
by their distance from the model's atoms.

    python benchmarks/retention_rim.py [--kinds tightTarget wideTarget] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import benchmark_quality  # noqa: E402  (this script's folder is on the path when it runs)
from deepemhancer.api import EnhanceOptions, enhance  # noqa: E402
from deepemhancer.evaluation import retention as R  # noqa: E402


def shares(values: np.ndarray, edges: tuple[float, ...]) -> list[float]:
    """Percent of ``values`` in each bin ``(edges[i], edges[i + 1]]`` (the first bin from 0, the last open)."""
    bounds = (-np.inf, *edges, np.inf)
    return [100.0 * float(np.mean((values > lo) & (values <= hi))) if values.size else float("nan")
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", nargs="+", default=["tightTarget", "wideTarget"])
    p.add_argument("--model-dir", help="folder of deepemhancer_<kind>.json models (default: the shipped ones)")
    p.add_argument("--real", default=benchmark_quality.REAL_DATA)
    args = p.parse_args(argv)
    print("| case | map | retention | lost within 2 / 2-4 / > 4 A of the rim "
          "| lost within 3 / 3-6 / > 6 A of an atom |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for case in benchmark_quality.real_cases(args.real, work):
            if case.half1 is None:
                continue
            voxel = case.grid.voxel_size
            spacing = np.broadcast_to(np.asarray(voxel, dtype=np.float64), (3,))[::-1]
            significant = R.significant_region(R.lowpass(0.5 * (case.half1 + case.half2), voxel))
            count = int(significant.sum())
            depth = ndimage.distance_transform_edt(significant, sampling=spacing)
            atoms = np.zeros(significant.shape, dtype=bool)
            atoms[tuple(R.atom_voxel_indices(case.model, case.grid).T)] = True
            from_atom = ndimage.distance_transform_edt(~atoms, sampling=spacing)
            maps = {"deposited map": case.signal}
            for kind in args.kinds:
                options = EnhanceOptions(processing_type=kind, model_path=args.model_dir, progress=False)
                maps[kind] = enhance(case.half1, voxel, half2=case.half2, options=options).data
            for name, data in maps.items():
                lost = significant & ~R.top_region(R.lowpass(data, voxel), count)
                rim = "/".join(f"{v:.1f}" for v in shares(depth[lost], (2.0, 4.0)))
                near = "/".join(f"{v:.1f}" for v in shares(from_atom[lost], (3.0, 6.0)))
                print(f"| {case.name} | {name} | {100.0 * (1 - lost.sum() / count):.1f} % | {rim} % | {near} % |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
