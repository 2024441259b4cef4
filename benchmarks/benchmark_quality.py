#!/usr/bin/env python
"""Quality benchmark in the style of the paper's Figures 1 and 3: input / auto-B / RELION / ours against the truth.

Cases:
  * synthetic test split written by the training pipeline (``deepemhancer-train prepare ... --write-mrc``):
    ``<pairs>/index.json`` entries of split ``test`` with half maps, ground truth and envelope as MRC files; the
    reference is the ground-truth map, the "env" columns use the simulated envelope;
  * pairs from the second, independent simulator (``--sim2 N``, :mod:`deepemhancer.evaluation.validation_simulator`,
    never used for training) on the test split of the atomic models; reference = the molecule at its B-factors;
    ``--sim2-resolution 2.2 3.0 --sim2-voxel 0.6 0.75`` makes them high-resolution maps at fine voxels;
  * real maps from the shared data folder (EMD-3488 + 5ME2, EMD-20026 crop + 3AJO, EMD-0093 + 6GYN): the deposited
    map itself, and the deposited map blurred with B = 100 A^2 plus white noise over the whole box (the deposited
    maps are masked: the noise imitates an unmasked input), split into two noisy halves; the reference is the
    model map (gemmi, on the map's grid), "env" is the model envelope. Their "signal" row scores the deposited map
    itself: the halves hold nothing more, so its FSC against the model map is the ceiling of what any method can
    reach without inventing density (the deposited map has its own noise and errors).

Columns: input (the map or the half-map average), auto-B (global Guinier sharpening, :mod:`deepemhancer.evaluation.
sharpen`), RELION (``relion_mask_create`` + ``relion_postprocess --auto_bfac``, half-map cases only, when installed),
LocScale (``--locscale``: LocScale 2 model-free, half-map cases, when the ``locscale`` command is installed by
``benchmarks/install_locscale.sh``; skipped with a notice otherwise; ``--locscale-rows-from EVAL.json`` takes its rows
from an earlier run's JSON instead, for the cases whose input row is identical there), ours (the real
``python -m deepemhancer`` command with ``--model``; with ``--ours-mask relion`` also ``-m`` RELION's automatic mask,
which selects the masked model, as a user with a mask would run it).
Retention, outside and atoms inside: :mod:`deepemhancer.evaluation.retention`.
Metrics: FSC 0.5 / 0.143 resolution against the reference over the whole box and inside the envelope, real-space CC
(whole box, envelope). Prints one markdown table per case set plus medians.

  python benchmarks/benchmark_quality.py [--model DIR_OR_FILE] [--pairs work-data/pairs-v2] [--sim2 10
      [--sim2-resolution LO HI] [--sim2-voxel LO HI]] [--real-data DIR]
      [--locscale [--locscale-cache work-data/locscale] [--locscale-max-box 128] | --locscale-rows-from EVAL.json]
      [--ours-mask relion]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
#: the real maps with fitted models (../shared/data/real beside the repository), wherever the script is run from
REAL_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "real")

from deepemhancer.evaluation.compare import evaluate  # noqa: E402
from deepemhancer.evaluation.fsc import halfmap_fsc, resolution_at  # noqa: E402
from deepemhancer.evaluation.relion import RelionResult, relion_postprocess  # noqa: E402
from deepemhancer.evaluation.sharpen import apply_bfactor  # noqa: E402
from deepemhancer.errors import InputError  # noqa: E402
from deepemhancer.io import MapGrid, read_map, write_map  # noqa: E402
from deepemhancer.models import find_model, read_metadata  # noqa: E402

METHODS = ("input", "auto-B", "RELION", "LocScale", "ours")
ORACLE = "signal"   # real pseudo-half cases: the deposited map the halves were made from (a ceiling, not a method)
METRICS = (("FSC0.5", "FSC0.5 (A)"), ("FSC0.143", "FSC0.143 (A)"), ("FSC0.5 env", "FSC0.5 env (A)"),
           ("FSC0.143 env", "FSC0.143 env (A)"), ("CC", "CC"), ("CC env", "CC env"), ("retention", "retention"),
           ("outside", "outside"), ("atoms inside", "atoms inside"))
PERCENT = {"retention", "outside", "atoms inside"}
REAL = (  # name, folder, map, model, reported resolution (A)
    ("EMD-3488", "emd_3488", "emd_3488.mrc", "5me2.pdb", 3.2),
    ("EMD-20026 crop", "emd_20026_crop", "emd20026_prot.mrc", "3ajo_fitted_refined.pdb", 1.75),
    ("EMD-0093", "emd_0093", "MAP_m4A.mrc.gz", "6gyn.pdb", 3.4),
)
BLUR_B = 100.0      # A^2 applied to the deposited map before adding noise
NOISE_REL_SD = 1.0  # white-noise SD per half map, relative to the SD of the blurred map


class Case:
    @property
    def stem(self) -> str:
        """The case's name as a file name stem (our output, LocScale's cached output, the report)."""
        return self.name.replace(" ", "_").replace("+", "p")

    def __init__(self, name, kind, grid, *, input_map=None, half1=None, half2=None, model=None, reference=None,
                 mask=None, resolution=None, files=None, signal=None):
        self.name, self.kind, self.grid = name, kind, grid
        self.signal = signal      # the noise-free map the halves were made from, where there is one
        self.input_map, self.half1, self.half2 = input_map, half1, half2
        self.model, self.reference, self.mask, self.resolution = model, reference, mask, resolution
        self.files = files or {}   # paths for the deepemhancer command: {"i": ..., "i2": ...}


def real_cases(folder: str, workdir: str, seed: int = 0) -> list[Case]:
    cases = []
    rng = np.random.default_rng(seed)
    for name, sub, map_name, model_name, res in REAL:
        path, model = os.path.join(folder, sub, map_name), os.path.join(folder, sub, model_name)
        if not (os.path.exists(path) and os.path.exists(model)):
            print(f"NOTE: {path} or {model} missing: case {name} skipped")
            continue
        data, grid = read_map(path)
        cases.append(Case(f"{name} deposited", "real", grid, input_map=data, model=model, resolution=res,
                          files={"i": path}))
        blurred = apply_bfactor(data, grid.voxel_size, BLUR_B)
        sd = NOISE_REL_SD * float(blurred.std())
        halves = [blurred + rng.normal(0.0, sd, data.shape).astype(np.float32) for _ in range(2)]
        files = {}
        for i, h in enumerate(halves, 1):
            p = os.path.join(workdir, f"{sub}_B{BLUR_B:.0f}_half{i}.mrc")
            write_map(p, h, grid, overwrite=True, label=f"benchmark: {name} B={BLUR_B:.0f} + noise, half {i}")
            files["i" if i == 1 else "i2"] = p
        cases.append(Case(f"{name} B{BLUR_B:.0f}+noise halves", "real", grid, half1=halves[0], half2=halves[1],
                          model=model, files=files, signal=data))
    return cases


def synthetic_cases(pairs: str, limit: int) -> list[Case]:
    index_path = os.path.join(pairs, "index.json")
    if not os.path.exists(index_path):
        print(f"NOTE: no synthetic test split ({index_path} not found; make one with "
              f"`deepemhancer-train prepare ... --write-mrc`): synthetic cases skipped")
        return []
    with open(index_path) as fh:
        entries = [e for e in json.load(fh)["pairs"] if e.get("split") == "test" and e.get("mrc")]
    if not entries:
        print(f"NOTE: {index_path} has no test pairs with MRC files: synthetic cases skipped")
    cases = []
    for e in entries[:limit]:
        f = {k: os.path.join(pairs, v) for k, v in e["mrc"].items()}
        h1, grid = read_map(f["half1"])
        h2, _ = read_map(f["half2"])
        truth, _ = read_map(f["groundtruth"])
        env = np.clip(read_map(f["envelope"])[0], 0.0, 1.0) if "envelope" in f else None
        cases.append(Case(f"synthetic {e['name']}", "synthetic", grid, half1=h1, half2=h2, reference=truth,
                          mask=env, files={"i": f["half1"], "i2": f["half2"]}))
    return cases


def validation_cases(models_dir: str, count: int, workdir: str, seed: int = 0,
                     resolution: tuple[float, float] | None = None,
                     voxel: tuple[float, float] | None = None) -> list[Case]:
    """Pairs from the second, independent simulator (:mod:`deepemhancer.evaluation.validation_simulator`) on the
    test split of ``models_dir`` (structures never trained on); reference = the molecule at its own B-factors.
    ``resolution`` / ``voxel`` (lo, hi) in A draw each pair's resolution / voxel size there instead of the
    simulator's own ranges (3-6 A; 0.8 A to resolution / 2.5, at most 1.4 A)."""
    from deepemhancer.evaluation.validation_simulator import simulate
    from deepemhancer.training.prepare import read_manifest
    if not os.path.isdir(models_dir):
        print(f"NOTE: {models_dir} not found: second-simulator cases skipped")
        return []
    tests = [path for path, split, _ in read_manifest(models_dir) if split == "test"]
    cases = []
    for k in range(count):
        path = tests[k % len(tests)]
        pair_seed = seed + 7 * k
        draw = np.random.default_rng(pair_seed)   # the asked ranges; the simulator draws the rest from the same seed
        d = None if resolution is None else float(draw.uniform(*resolution))
        pair = simulate(path, seed=pair_seed, resolution=d, voxel=None if voxel is None else draw.uniform(*voxel))
        grid = MapGrid(pair.half1.shape, (pair.voxel_size,) * 3)
        files = {}
        for i, h in enumerate((pair.half1, pair.half2), 1):
            f = os.path.join(workdir, f"sim2_{pair.name}_{k}_half{i}.mrc")
            write_map(f, h, grid, overwrite=True, label=f"benchmark: second simulator {pair.name}, half {i}")
            files["i" if i == 1 else "i2"] = f
        cases.append(Case(f"sim2 {pair.name} {pair.resolution:.1f}A", "sim2", grid, half1=pair.half1,
                          half2=pair.half2, reference=pair.truth, mask=pair.envelope, files=files))
    return cases


def run_locscale(case: Case, workdir: str, cache: str | None = None,
                 max_box: int = 0) -> tuple[np.ndarray | None, str]:
    """LocScale 2 model-free (optional baseline): needs the `locscale` command (PyPI locscale, installed for CPUs
    without REFMAC5 by benchmarks/install_locscale.sh) on PATH. Model-free = a pseudo-atomic model refined against
    the halves (``--build_using_pseudomodel``; LocScale's default model-free path downloads EMmerNet weights at run
    time), at the halves' FSC 0.143 resolution. ``cache``: a folder keeping each case's output, reused by later
    runs (the cases are deterministic for a seed; LocScale takes minutes per map). ``max_box``: skip maps of more
    than that number cubed voxels unless the cache has them (LocScale's pseudo-atom refinement took over 15 min on
    one core for a 172^3 box)."""
    if case.half1 is None:
        return None, "needs half maps"
    cached = os.path.join(cache, case.stem + "_locscale.mrc") if cache else None
    if cached and os.path.exists(cached):
        return read_map(cached)[0], "cached"
    if max_box and case.half1.size > max_box ** 3:
        return None, f"box {'x'.join(map(str, case.half1.shape))} is over --locscale-max-box {max_box}"
    if shutil.which("locscale") is None:
        return None, ("not installed (bash benchmarks/install_locscale.sh, then put work-data/locscale-venv/bin "
                      "on PATH after the engine's environment)")
    folder = tempfile.mkdtemp(prefix="locscale_", dir=workdir)
    halves = []
    for key in ("i", "i2"):   # LocScale rewrites its first half map in place and drops the origin: give copies
        halves.append(shutil.copy(case.files[key], folder))
    out = os.path.join(folder, "locscale_output.mrc")
    resolution = resolution_at(halfmap_fsc(case.half1, case.half2, case.grid.voxel_size), 0.143)
    cmd = ["locscale", "--halfmap_paths", *halves, "-o", out, "-mres", f"{resolution:.2f}",
           "--build_using_pseudomodel", "-np", "1"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
    if proc.returncode != 0 or not os.path.exists(out):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return None, f"failed (exit {proc.returncode}): {tail[0]}"
    data, _ = read_map(out)
    if data.shape != case.grid.shape:
        return None, f"output on another grid ({data.shape} voxels, the input {case.grid.shape})"
    if cached:
        os.makedirs(cache, exist_ok=True)
        write_map(cached, data, case.grid, overwrite=True, label=f"LocScale 2 model-free: {case.name}")
    return data, f"{time.time() - t0:.0f} s"


def earlier_rows(path: str, method: str) -> dict[str, tuple[dict, dict]]:
    """Case name -> (input row, ``method``'s row) from an earlier ``--json`` run, for the cases that have both."""
    with open(path) as fh:
        return {r["case"]: (r["rows"]["input"], r["rows"][method]) for r in json.load(fh)
                if "input" in r["rows"] and method in r["rows"]}


def same_input(a: dict, b: dict) -> bool:
    """Whether two input rows score the same map: the same case, prepared by the same code from the same seed."""
    return all(abs(a[k] - b[k]) <= 1e-6 for k in ("FSC0.5", "FSC0.5 env", "CC", "CC env"))


def run_ours(case: Case, model: str, workdir: str, extra: list[str]) -> tuple[np.ndarray | None, str]:
    """Run the real command; returns (map, message)."""
    out = os.path.join(workdir, case.stem + "_ours.mrc")
    cmd = [sys.executable, "-m", "deepemhancer", "-i", case.files["i"]]
    if "i2" in case.files:
        cmd += ["-i2", case.files["i2"]]
    cmd += ["-o", out, "--deepLearningModelPath", model, "--overwrite", "--quiet"] + extra
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "torch")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return None, f"`{' '.join(cmd[1:4])} ...` failed (exit {proc.returncode}): {tail[0]}"
    data, _ = read_map(out)
    return data, f"{time.time() - t0:.0f} s"


def relion_mask_file(case: Case, relion: RelionResult, workdir: str) -> str:
    """The mask a user would give with ``-m``: RELION's automatic mask of the half-map average (from the same RELION
    run as the RELION column), written beside the case's other files."""
    path = os.path.join(workdir, case.stem + "_relion_mask.mrc")
    write_map(path, relion.mask, case.grid, overwrite=True)
    return path


def model_voxel_size(model: str | None, extra: list[str], masked: bool = False) -> float | None:
    """Voxel size (A) of the grid the network works on, from our model's metadata (None for official checkpoints):
    the output is resampled from it, so it holds nothing finer than two of these voxels. ``masked``: the command
    gets ``-m``, which selects the masked model whatever ``-p`` says."""
    if not model:
        return None
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-p", "--processingType", default="tightTarget")
    try:
        path = find_model("masked" if masked else flags.parse_known_args(extra)[0].processingType, model)
        return float(read_metadata(path)[0].voxel_size) if path.endswith(".json") else None
    except InputError:
        return None


def fmt(v: float | None, key: str) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    if key in PERCENT:
        return f"{100 * v:.1f} %"
    return f"{v:.3f}" if key.startswith("CC") else f"{v:.2f}"


def _median(values) -> float | None:
    """Median of the values that exist (None and NaN left out); None when there are none."""
    known = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.median(known)) if known else None


def main(argv=None) -> int:
    workdir = tempfile.mkdtemp(prefix="deepemhancer_bench_")  # noisy halves and our outputs; removed at the end
    try:
        return _main(argv, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _main(argv, workdir: str) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="trained model (file or folder) for the 'ours' column")
    p.add_argument("--ours-args", default="", help="extra flags for `python -m deepemhancer` (e.g. '-p wideTarget')")
    p.add_argument("--pairs", default=os.path.join(ROOT, "work-data", "pairs-v2"),
                   help="prepared training folder with the synthetic test split (default %(default)s)")
    p.add_argument("--max-synthetic", type=int, default=10, help="at most this many synthetic cases")
    p.add_argument("--real-data", default=REAL_DATA,
                   help="folder with emd_3488/ and emd_20026_crop/ (default %(default)s)")
    p.add_argument("--ours-mask", choices=("relion",),
                   help="give ours a mask with -m (which selects the masked model), as a user with a mask would: "
                        "'relion' = RELION's automatic mask of the half-map average (half-map cases only)")
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--sim2", type=int, default=0, metavar="N",
                   help="also N pairs from the second, independent simulator on the test split of --models-dir")
    p.add_argument("--sim2-resolution", type=float, nargs=2, metavar=("LO", "HI"),
                   help="draw the second simulator's resolutions in LO-HI A (default: its own 3-6 A); e.g. 2.2 3.0 "
                        "for high-resolution maps, whose voxels are then 0.8-1.2 A")
    p.add_argument("--sim2-voxel", type=float, nargs=2, metavar=("LO", "HI"),
                   help="draw the second simulator's voxel sizes in LO-HI A (e.g. 0.6 0.75, as high-resolution "
                        "data are often collected)")
    p.add_argument("--models-dir", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "atomic_models"))
    p.add_argument("--locscale", action="store_true",
                   help="LocScale 2 model-free baseline (half-map cases; skipped with a notice when not installed)")
    p.add_argument("--locscale-cache", metavar="DIR",
                   help="keep LocScale's output per case here and reuse it in later runs (e.g. work-data/locscale)")
    p.add_argument("--locscale-max-box", type=int, default=0, metavar="N",
                   help="run LocScale only on boxes of at most N^3 voxels (0: all)")
    p.add_argument("--locscale-rows-from", metavar="EVAL.json",
                   help="copy the LocScale rows of an earlier --json run (LocScale takes hours on CPU), for the cases "
                        "whose input row is identical there; the others get none")
    p.add_argument("--no-relion", action="store_true")
    p.add_argument("--report-dir", help="also write one PNG/HTML report per case here")
    p.add_argument("--json", help="write all numbers to this JSON file")
    p.add_argument("--cases", nargs="+", metavar="TEXT", help="only the cases whose name contains one of these")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    cases = synthetic_cases(args.pairs, args.max_synthetic)
    if args.sim2:
        cases += validation_cases(args.models_dir, args.sim2, workdir, args.seed, args.sim2_resolution,
                                  args.sim2_voxel)
    if not args.no_real:
        if os.path.isdir(args.real_data):
            cases += real_cases(args.real_data, workdir, args.seed)
        else:
            print(f"NOTE: {args.real_data} not found: real-map cases skipped")
    if args.cases:
        cases = [c for c in cases if any(t.lower() in c.name.lower() for t in args.cases)]
    if not cases:
        print("no cases to benchmark")
        return 1
    if not args.model:
        print("NOTE: 'ours' column unavailable: no trained model given (--model DIR_OR_FILE).")
    elif not os.path.exists(args.model):
        print(f"NOTE: 'ours' column unavailable: model {args.model} does not exist.")
        args.model = None

    earlier_locscale = earlier_rows(args.locscale_rows_from, "LocScale") if args.locscale_rows_from else {}
    results = []   # (case, {method: row or None}, notes)
    for case in cases:
        t0 = time.time()
        ours, ours_msg = (None, "no model")
        relion_run = None   # --ours-mask: one RELION run gives the mask and the RELION column
        if args.model and args.ours_mask and case.half1 is None:
            ours_msg = f"--ours-mask {args.ours_mask} needs half maps"
        elif args.model:
            extra = args.ours_args.split()
            if args.ours_mask:
                relion_run = relion_postprocess(case.half1, case.half2, case.grid)
                extra += ["-m", relion_mask_file(case, relion_run, workdir)]
            ours, ours_msg = run_ours(case, args.model, workdir, extra)
        notes, extra_maps = [], {}
        if args.locscale and case.half1 is not None:
            locscale, locscale_msg = run_locscale(case, workdir, args.locscale_cache, args.locscale_max_box)
            if locscale is not None:
                extra_maps["LocScale"] = locscale
            else:
                notes.append(f"LocScale column unavailable: {locscale_msg}")
        if case.signal is not None:
            extra_maps[ORACLE] = case.signal
        ev = evaluate(case.grid, processed=ours, processed_label="ours", input_map=case.input_map,
                      half1=case.half1, half2=case.half2, model=case.model, reference_map=case.reference,
                      mask=case.mask, resolution=case.resolution, relion=not args.no_relion,
                      relion_result=relion_run, extra_maps=extra_maps, log=lambda s: None)
        notes = [n for n in ev.notes if "RELION" in n and "half maps" not in n] + notes
        rows = {s.name: s.row() for s in ev.scores}
        if case.name in earlier_locscale and "LocScale" not in rows:
            earlier_input, earlier_locscale_row = earlier_locscale[case.name]
            if same_input(rows["input"], earlier_input):
                rows["LocScale"] = earlier_locscale_row
                notes.append(f"LocScale row from {os.path.basename(args.locscale_rows_from)} (identical input)")
            else:
                notes.append(f"LocScale row of {os.path.basename(args.locscale_rows_from)} not used: its input differs")
        if args.model and ours is None:
            notes.append(f"ours: {ours_msg}")
        results.append((case, rows, notes, ev))
        extra = f", RELION B {ev.details['RELION']['B']:.0f}" if "RELION" in ev.details else ""
        print(f"  {case.name}: data resolution {ev.resolution:.2f} A ({ev.resolution_source}), auto-B fitted B "
              f"{ev.details.get('auto-B', {}).get('B', float('nan')):.0f}{extra}, "
              f"ours: {ours_msg if ours is not None or not args.model else 'failed'}; "
              f"{time.time() - t0:.0f} s", flush=True)
        for n in notes:
            print(f"    NOTE: {n}")
        if args.report_dir:
            from deepemhancer.evaluation.report import write_report
            write_report(ev, args.report_dir, title=case.name,
                         basename=case.stem)

    head = ["case", "map"] + [label for _, label in METRICS]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for case, rows, _, _ in results:
        for m in METHODS + ((ORACLE,) if ORACLE in rows else ()):
            r = rows.get(m)
            cells = [fmt(r[k], k) if r else "n/a" for k, _ in METRICS]
            print(f"| {case.name} | {m} | " + " | ".join(cells) + " |")

    print()
    print("Medians over cases (n = number of cases with that column):")
    print()
    groups = [("all", results)] + [(k, [r for r in results if r[0].kind == k])
                                   for k in ("synthetic", "sim2", "real")]
    head = ["cases", "map", "n"] + [label for _, label in METRICS]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for gname, group in groups:
        if not group or (gname != "all" and len(group) == len(results)):
            continue
        for m in METHODS + ((ORACLE,) if any(ORACLE in rows for _, rows, _, _ in group) else ()):
            vals = [rows[m] for _, rows, _, _ in group if m in rows]
            cells = [fmt(_median([v[k] for v in vals]), k) for k, _ in METRICS]
            print(f"| {gname} | {m} | {len(vals)} | " + " | ".join(cells) + " |")
    print()
    print("Resolutions in A (lower is better), CC unitless (higher is better). 'env': inside the model envelope "
          "(real) or the simulated envelope (synthetic). RELION: half-map cases only. 'signal' (real pseudo-half "
          "cases): the deposited map the halves were made from, the best a method can reach without inventing density.")
    if args.json:
        network_voxel = model_voxel_size(args.model, args.ours_args.split(), masked=bool(args.ours_mask))
        with open(args.json, "w") as fh:
            json.dump([{"case": c.name, "kind": c.kind, "rows": rows, "notes": notes,
                        "resolution": ev.resolution, "nyquist": 2.0 * max(c.grid.voxel_size),
                        "network_nyquist": network_voxel and 2.0 * network_voxel,
                        "details": ev.details} for c, rows, notes, ev in results],
                      fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
