"""Speed and memory of the default (fast) tiling against DeepEMhancer's original tiling, on the same weights.

For each box (128^3, 256^3, 384^3, 512^3 at 1 A; a synthetic molecule in a realistic box and the real EMD-3488 map
padded into the box with matching noise) it runs the real command (`python -m deepemhancer`) in a subprocess per
tiling and prints wall time, cubes evaluated, peak RSS of the process, the CC between the two outputs (whole box and
inside the molecule's envelope) and the speed ratio. Original tilings with more than --max-original-cubes cubes take hours
on a CPU: their time is estimated (marked "est.") from the network's measured time per cube on cubes of the same
map plus the pipeline's non-network cost, and their CC is then not available.

    python benchmarks/benchmark_speed.py [--sizes 128 256 384] [--model PATH] [--backend torch]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from deepemhancer.io import MapGrid, read_map, write_map  # noqa: E402
from deepemhancer.resample import to_voxel_size  # noqa: E402
from deepemhancer.tiling import TilingPlan, count_cubes  # noqa: E402

EMD3488 = os.path.join(REPO, "tests", "data", "emd_3488.mrc")


def synthetic_molecule(size: int, rng: np.random.Generator) -> np.ndarray:
    """A protein-like blob cluster of about 0.35 x box diameter, with noise of SD 1/4 of the density peak."""
    density = np.zeros((size,) * 3, np.float32)
    radius = 0.35 * size / 2
    centres = rng.normal(size / 2, radius / 2, size=(int(40 * (size / 128) ** 2), 3)).clip(8, size - 8)
    for c in centres.astype(int):
        density[tuple(c)] += 1.0
    density = ndimage.gaussian_filter(density, 4.0)
    density /= density.max()
    return density + 0.25 * ndimage.gaussian_filter(rng.standard_normal(density.shape), 0.8).astype(np.float32) * 2


def real_in_box(size: int, rng: np.random.Generator) -> np.ndarray:
    data, grid = read_map(EMD3488)
    at1 = to_voxel_size(data, grid.voxel_size[0], 1.0)
    box = (0.02 * rng.standard_normal((size,) * 3)).astype(np.float32)
    n = min(size, at1.shape[0])
    start = (size - n) // 2
    box[start:start + n, start:start + n, start:start + n] += at1[:n, :n, :n]
    return box


def run(input_map: str, output: str, tiling: str, model: str | None, backend: str) -> dict:
    cmd = [sys.executable, "-m", "deepemhancer", "-i", input_map, "-o", output, "--tiling", tiling, "-g", "-1",
           "--backend", backend, "--overwrite"]
    if model:
        cmd += ["--deepLearningModelPath", model]
    env = dict(os.environ, PYTHONPATH=REPO)
    with tempfile.TemporaryFile(mode="w+") as log:  # a file, not a pipe: the progress bar may fill a pipe
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        text = log.read()
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    return {"wall": wall, "rss_gb": usage.ru_maxrss / 1024 ** 2, "stderr": text}


def seconds_per_cube(vol: np.ndarray, model_path: str | None, backend: str, n_batches: int = 4,
                     batch: int = 8) -> float:
    """Network time per 64^3 cube, measured in a subprocess on cubes cut from the map (after one warm-up batch)."""
    code = f"""
import sys, time, numpy as np
sys.path.insert(0, {REPO!r})
from deepemhancer import devices
devices.configure("-1", {backend!r})
from deepemhancer.models import find_model, load_model
m = load_model(find_model("tightTarget", {model_path!r}))
c = m.metadata.cube_size
vol = np.load(sys.argv[1])
cubes = np.stack([vol[i:i + c, i:i + c, i:i + c] for i in range(0, {batch} * 8, 8)])[..., None].astype(np.float32)
m.predict(cubes)
t = time.perf_counter()
for _ in range({n_batches}):
    m.predict(cubes)
print((time.perf_counter() - t) / ({n_batches} * {batch}))
"""
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f.name, vol * (0.1 / 0.05))
        out = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def cc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 384, 512])
    parser.add_argument("--cases", nargs="+", default=["synthetic", "emd3488"])
    parser.add_argument("--model", help="model file or folder (default: the shipped tightTarget)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--max-original-cubes", type=int, default=800,
                        help="original tilings with more cubes are estimated from the measured time per cube")
    parser.add_argument("--skip-original-above", type=int, default=10 ** 9,
                        help="do not run the original tiling at all above this box size")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for case in args.cases:
                vol = synthetic_molecule(size, rng) if case == "synthetic" else real_in_box(size, rng)
                grid = MapGrid((size,) * 3, (1.0, 1.0, 1.0))
                src = write_map(os.path.join(tmp, f"{case}_{size}.mrc"), vol, grid, overwrite=True)
                fast_out = os.path.join(tmp, f"{case}_{size}_fast.mrc")
                fast = run(src, fast_out, "fast", args.model, args.backend)
                fast_cubes = _cubes_from(fast["stderr"])
                orig_total = count_cubes((size,) * 3, TilingPlan.for_mode("original"))
                orig = None
                cc_all = cc_env = float("nan")
                estimated = False
                if size <= args.skip_original_above:
                    if orig_total > args.max_original_cubes:
                        # hours on a CPU: time the network on real cubes of this map and add the pipeline's
                        # non-network cost measured in the fast run
                        estimated = True
                        per_cube = seconds_per_cube(vol, args.model, args.backend)
                        overhead = max(0.0, fast["wall"] - per_cube * int(fast_cubes.split()[0]))
                        orig = {"wall": overhead + per_cube * orig_total, "rss_gb": float("nan")}
                    else:
                        orig_out = os.path.join(tmp, f"{case}_{size}_orig.mrc")
                        orig = run(src, orig_out, "original", args.model, args.backend)
                        a, _ = read_map(orig_out)
                        b, _ = read_map(fast_out)
                        smooth = ndimage.gaussian_filter(vol, 2)
                        env = ndimage.binary_dilation(smooth > 0.3 * smooth.max(), iterations=3)
                        cc_all, cc_env = cc(a, b), cc(a[env], b[env])
                rows.append((case, size, orig, orig_total, estimated, fast, fast_cubes, cc_all, cc_env))
                _print_row(rows[-1])
    print()
    print("| case | box | original s | original cubes | original RSS GB | fast s | fast cubes | fast RSS GB | "
          "CC box | CC envelope | speed ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(_format_row(row))
    return 0


def _cubes_from(stderr: str) -> str:
    for line in stderr.splitlines():
        if " cubes (" in line:
            return line.split(";")[-2].strip().split(" cubes")[0]
    return "?"


def _format_row(row) -> str:
    case, size, orig, orig_total, estimated, fast, fast_cubes, cc_all, cc_env = row
    est = " est." if estimated else ""
    if orig is None:
        return (f"| {case} | {size}^3 | - | {orig_total} | - | {fast['wall']:.1f} | {fast_cubes} | "
                f"{fast['rss_gb']:.2f} | - | - | - |")
    orig_rss = "-" if estimated else f"{orig['rss_gb']:.2f}"
    return (f"| {case} | {size}^3 | {orig['wall']:.0f}{est} | {orig_total} | {orig_rss} | "
            f"{fast['wall']:.1f} | {fast_cubes} | {fast['rss_gb']:.2f} | {cc_all:.4f} | {cc_env:.4f} | "
            f"{orig['wall'] / fast['wall']:.1f}{est} |")


def _print_row(row) -> None:
    print(_format_row(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
