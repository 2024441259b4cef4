"""FSC curves, shell by shell, of models run on a real map's pseudo half maps: where an FSC0.5 figure comes from.

Each real case of ``benchmark_quality.py`` (../shared/data/real: the deposited map blurred by B = 100 A^2, noise added,
split in two; the same seed, so the same halves) is run through the real command with each given model; the
unmasked FSC against the model map (the benchmark's reference) is printed at fixed shells beside its 0.5 crossing,
for the input (the halves' average) and the deposited map ("signal", the ceiling). Where a curve runs flat near 0.5
over several shells, a small change of it moves FSC0.5 by the whole flat stretch.

    python benchmarks/real_fsc_curves.py [--case 20026] LABEL=MODEL[:FLAG:FLAG...] ...
    e.g. tight=deepemhancer/models highRes=deepemhancer/models:-p:highRes
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import benchmark_quality  # noqa: E402  (this script's folder is on the path when it runs)
from deepemhancer.evaluation import fsc as F  # noqa: E402
from deepemhancer.evaluation.modelmap import model_map  # noqa: E402

SHELLS = (3.2, 3.0, 2.8, 2.6, 2.5, 2.4, 2.3, 2.2, 2.1, 2.0, 1.9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="LABEL=MODEL[:FLAG...]")
    p.add_argument("--case", default="20026", help="run the real cases whose name contains this (default: 20026)")
    p.add_argument("--real", default=benchmark_quality.REAL_DATA)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        for case in benchmark_quality.real_cases(args.real, work):
            if case.half1 is None or args.case not in case.name:
                continue
            maps = {"input": 0.5 * (case.half1 + case.half2), "signal": case.signal}
            for spec in args.models:
                label, _, rest = spec.partition("=")
                model, *flags = rest.split(":")
                out, message = benchmark_quality.run_ours(case, model, work, flags)
                if out is None:
                    print(f"{label}: {message}")
                    continue
                maps[label] = out
            reference = model_map(case.model, case.grid)
            print(f"\n{case.name}: unmasked FSC against the model map at these shells (A)\n")
            print("| map | FSC0.5 (A) | " + " | ".join(f"{s:g}" for s in SHELLS) + " |")
            print("|---|---|" + "---|" * len(SHELLS))
            for label, data in maps.items():
                curve = F.fsc(data, reference, case.grid.voxel_size)
                values = np.interp(1.0 / np.asarray(SHELLS), curve.frequency, curve.fsc)
                print(f"| {label} | {F.resolution_at(curve, 0.5):.2f} | "
                      + " | ".join(f"{v:.3f}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
