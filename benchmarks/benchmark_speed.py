"""End-to-end speed and memory of the default path against the Keras backends and the original tiling, same weights.

For each box (128^3, 256^3, 384^3, 512^3 at 1 A; a synthetic molecule in a realistic box and the real EMD-3488 map
padded into the box with matching noise) it runs the real command (`python -m deepemhancer`) in a subprocess per
path and prints wall time, peak RSS of the process, cubes evaluated against the molecule's volume, the CC of every
other path's output with the default's (whole box and inside the molecule's envelope) and the speed ratios.

Paths: ``default`` (no flags: ``--backend auto``, OpenVINO on the CPU when installed, fast tiling), ``torch`` and
``tensorflow`` (``--backend``, fast tiling), ``original`` (``--tiling original``, default runtime). Above
--measure-up-to the slower paths are estimated (marked "est.") from the default run's wall time plus the difference
in network time per cube, measured in a subprocess on cubes of the same map, times the cubes the path evaluates;
their CC is then not available.

    python benchmarks/benchmark_speed.py [--sizes 128 256 384 512] [--model PATH] [--paths default torch ...]

The default --paths run for about 50 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
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
from deepemhancer.tiling import count_cubes  # noqa: E402

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


PATH_FLAGS = {"default": [], "torch": ["--backend", "torch"], "tensorflow": ["--backend", "tensorflow"],
              "original": ["--tiling", "original"],
              # what DeepEMhancer 0.17 itself runs: its tiling on TensorFlow
              "original_tensorflow": ["--tiling", "original", "--backend", "tensorflow"]}
# Largest box each path is measured on (above it, estimated); the original tiling on TensorFlow takes 15 min at 256^3.
MEASURE_UP_TO = {"torch": 256, "tensorflow": 256, "original": 256, "original_tensorflow": 128}


def run(input_map: str, output: str, flags: list[str], model: str | None) -> dict:
    cmd = [sys.executable, "-m", "deepemhancer", "-i", input_map, "-o", output, "-g", "-1", "--overwrite", *flags]
    if model:
        cmd += ["--deepLearningModelPath", model]
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "DEEPEMHANCER_BACKEND")}
    env["PYTHONPATH"] = REPO
    # Linux keeps a process's peak RSS across exec, so a child forked from this (large) process would report this
    # one's size: GNU time, a small process, forks the command itself and reports its peak alone
    gnu_time = os.path.exists("/usr/bin/time")
    with tempfile.TemporaryFile(mode="w+") as log, tempfile.NamedTemporaryFile(mode="r") as rss:
        start = time.perf_counter()
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd if gnu_time else cmd
        proc = subprocess.Popen(timed, env=env, stdout=log, stderr=log, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        text = log.read()
        peak_kb = float(rss.read().split()[-1]) if gnu_time and status == 0 else usage.ru_maxrss
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    # "wrote ...; N of M cubes (...); ...": found by its own pattern, not by position (the line gained a field)
    cubes = next((m.group(1) for m in map(re.compile(r"(\d+ of \d+) cubes \(").search, text.splitlines()) if m), "?")
    return {"wall": wall, "rss_gb": peak_kb / 1024 ** 2, "cubes": cubes, "estimated": False}


def seconds_per_cube(vol: np.ndarray, model_path: str | None, path: str, cube: int, n_cubes: int = 3) -> float:
    """Network time per cube of side ``cube`` on ``path``'s runtime, in a subprocess (after one warm-up cube)."""
    backend = {"torch": "torch", "tensorflow": "tensorflow", "original_tensorflow": "tensorflow"}.get(path, "auto")
    code = f"""
import sys, time, numpy as np
sys.path.insert(0, {REPO!r})
from deepemhancer import devices
runtime, _ = devices.configure("-1", {backend!r})
from deepemhancer.models import find_model, load_model
m = load_model(find_model("tightTarget", {model_path!r}), runtime="openvino" if runtime == "openvino" else "keras")
vol = np.load(sys.argv[1])
c = {cube}
cubes = [vol[i:i + c, i:i + c, i:i + c][None, ..., None].astype(np.float32) for i in range(0, {n_cubes + 1} * 4, 4)]
m.predict(cubes[0])
t = time.perf_counter()
for x in cubes[1:]:
    m.predict(x)
print((time.perf_counter() - t) / {n_cubes})
"""
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "DEEPEMHANCER_BACKEND")}
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f.name, np.pad(vol, cube) * (0.1 / 0.05))
        out = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, check=True,
                             env=env)
    return float(out.stdout.strip().splitlines()[-1])


def cc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def molecule_envelope(vol: np.ndarray) -> np.ndarray:
    smooth = ndimage.gaussian_filter(vol, 2)
    return ndimage.binary_dilation(smooth > 0.3 * smooth.max(), iterations=3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 384, 512])
    parser.add_argument("--cases", nargs="+", default=["synthetic", "emd3488"])
    parser.add_argument("--paths", nargs="+", default=list(PATH_FLAGS), choices=list(PATH_FLAGS))
    parser.add_argument("--model", help="model file or folder (default: the shipped tightTarget)")
    parser.add_argument("--measure-up-to", type=int,
                        help="paths other than the default are estimated above this box size (default: %s)"
                        % ", ".join(f"{k} {v}" for k, v in MEASURE_UP_TO.items()))
    args = parser.parse_args(argv)
    from deepemhancer.models import find_model, read_metadata
    meta, _ = read_metadata(find_model("tightTarget", args.model))
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for case in args.cases:
                vol = synthetic_molecule(size, rng) if case == "synthetic" else real_in_box(size, rng)
                grid = MapGrid((size,) * 3, (1.0, 1.0, 1.0))
                src = write_map(os.path.join(tmp, f"{case}_{size}.mrc"), vol, grid, overwrite=True)
                env = molecule_envelope(vol)
                outputs, results = {}, {}
                for path in ["default"] + [p for p in args.paths if p != "default"]:
                    out = os.path.join(tmp, f"{case}_{size}_{path}.mrc")
                    if path == "default" or size <= (args.measure_up_to or MEASURE_UP_TO[path]):
                        results[path] = run(src, out, PATH_FLAGS[path], args.model)
                        outputs[path] = read_map(out)[0]
                        continue
                    default = results["default"]
                    original = path.startswith("original")
                    plan = meta.tiling_plan("original" if original else "fast").fitted((size,) * 3)
                    fast_plan = meta.tiling_plan("fast").fitted((size,) * 3)
                    n_default = int(default["cubes"].split()[0])
                    n_path = count_cubes((size,) * 3, plan) if original else n_default
                    per_default = seconds_per_cube(vol, args.model, "default", fast_plan.cube)
                    per_path = seconds_per_cube(vol, args.model, path, plan.cube)
                    results[path] = {"wall": default["wall"] + per_path * n_path - per_default * n_default,
                                     "rss_gb": float("nan"), "cubes": f"{n_path}", "estimated": True}
                row = {"case": case, "size": size, "results": results, "molecule": float(env.mean()),
                       "cube": meta.tiling_plan("fast").fitted((size,) * 3).cube, "cc": {}}
                for path, data in outputs.items():
                    if path != "default":
                        a, b = outputs["default"], data
                        row["cc"][path] = (cc(a, b), cc(a[env], b[env]))
                rows.append(row)
                print(_format_row(row, args.paths), flush=True)
    print()
    print(_header(args.paths))
    for row in rows:
        print(_format_row(row, args.paths))
    print()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, threads {os.environ.get('OMP_NUM_THREADS', 'all')}")
    return 0


def _header(paths) -> str:
    others = [p for p in paths if p != "default"]
    cols = ["case", "box", "molecule % of box", "default s", "default RSS GB", "default cubes",
            "evaluated / molecule volume"]
    for p in others:
        cols += [f"{p} s", f"{p} RSS GB", f"x {p}", f"CC {p} box / env"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def _format_row(row, paths) -> str:
    d = row["results"]["default"]
    n = int(d["cubes"].split()[0]) if d["cubes"] != "?" else 0
    evaluated = n * row["cube"] ** 3 / (row["molecule"] * row["size"] ** 3)
    cells = [row["case"], f"{row['size']}^3", f"{100 * row['molecule']:.1f}", f"{d['wall']:.1f}",
             f"{d['rss_gb']:.2f}", d["cubes"], f"{evaluated:.1f}"]
    for p in paths:
        if p == "default":
            continue
        r = row["results"].get(p)
        est = " est." if r and r["estimated"] else ""
        cc_text = "-" if p not in row["cc"] else "%.5f / %.5f" % row["cc"][p]
        cells += [f"{r['wall']:.1f}{est}", "-" if r["estimated"] else f"{r['rss_gb']:.2f}",
                  f"{r['wall'] / d['wall']:.1f}{est}", cc_text]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
