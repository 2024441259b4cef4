"""OpenVINO throughput of the shipped network per cube size and thread count (one cube, after a warm-up).

    python benchmarks/benchmark_runtime.py [--cubes 96 128 160 192 256] [--threads 1 2] [--model A.json B.json]

Prints seconds per cube and million voxels per second; the fast tiling's cube (model metadata ``fast_cube``) is
chosen from these numbers and the cost of the overlap, ``(stride / cube)^3`` of each cube being new voxels.
With several ``--model`` files (e.g. two architectures of a capacity comparison) each row names its model and the
last column gives its time relative to the first model's at the same threads and cube.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deepemhancer import runtime_openvino  # noqa: E402
from deepemhancer.models import find_model, read_metadata  # noqa: E402
from deepemhancer.models.weights import read_keras_weights  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cubes", nargs="+", type=int, default=[96, 128, 160, 192, 256])
    parser.add_argument("--threads", nargs="+", type=int, default=sorted({1, runtime_openvino.cpu_threads()}))
    parser.add_argument("--kind", default="tightTarget")
    parser.add_argument("--model", nargs="+", metavar="PATH",
                        help="model files or folders to time (default: the installed model of --kind)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    paths = [find_model(args.kind, path) for path in (args.model or [None])]
    models = [(os.path.relpath(path), *read_metadata(path)) for path in paths]
    parameters = {weights: sum(array.size for arrays in read_keras_weights(weights).values() for array in arrays)
                  for _, _, weights in models}
    print("| model | parameters | threads | cube | first s | best s | Mvoxel/s | new voxels per cube at stride "
          "cube-16 | x first model |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        first_model_best = {}
        for name, meta, weights in models:
            network = runtime_openvino.load_network(weights, meta.architecture, threads=threads)
            for cube in args.cubes:
                x = np.random.default_rng(0).normal(0, 0.1, (1, cube, cube, cube, 1)).astype(np.float32)
                times = []
                for _ in range(args.repeats + 1):
                    start = time.perf_counter()
                    network.predict(x)
                    times.append(time.perf_counter() - start)
                best = min(times[1:])
                first_model_best.setdefault(cube, best)
                print(f"| {name} | {parameters[weights]:,} | {threads} | {cube} | {times[0]:.2f} | {best:.2f} | "
                      f"{cube ** 3 / best / 1e6:.2f} | {((cube - 16) / cube) ** 3:.2f} | "
                      f"{best / first_model_best[cube]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
