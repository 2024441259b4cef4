"""Write training pairs to a folder: one compressed ``.npz`` per pair plus ``index.json``.

Layout of a prepared folder::

    index.json                 {"version", "created_by", "pairs": [{"name", "split", "file", "source", ...}]}
    train/<name>.npz           input, target_tight, target_wide, target_sharp, mask_tight, mask_wide (1 A grid, float16)
    train/<name>.json          the pair's summary (simulation parameters, measured FSC resolution, noise stats)
    val/...  test/...
    mrc/<split>/<name>_*.mrc   (optional) half maps, ground truth and envelope at the simulated voxel size, for
                               end-to-end evaluation with the real ``deepemhancer`` command

``input`` is normalised exactly as inference does it (noise mean 0, SD 0.1); the raw average at 1 A is
``input * 10 * noise_std + noise_mean``, so the mask normalisation of the ``masked`` model can be redone from it.
Pairs already on disk are kept (the folder is a cache: rerunning only fills in what is missing).
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io import MapGrid, read_map, write_map
from .. import normalize as norm
from ..resample import to_voxel_size
from . import simulate as sm
from . import targets as tg

INDEX = "index.json"
SPLITS = ("train", "val", "test")
MODEL_EXTENSIONS = (".pdb", ".cif", ".ent", ".mmcif", ".pdb.gz", ".cif.gz", ".ent.gz", ".mmcif.gz")


@dataclass(frozen=True)
class Job:
    path: str
    split: str
    variant: int
    seed: int
    resolution_range: tuple
    write_mrc: bool
    solvent_share: float = sm.SOLVENT_SHARE


def read_manifest(folder: str) -> list[tuple[str, str, int]]:
    """(file path, split, n_residues) from ``MANIFEST.tsv``; without a manifest every model file goes to train."""
    manifest = os.path.join(folder, "MANIFEST.tsv")
    if os.path.exists(manifest):
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return [(os.path.join(folder, r["file"]), r.get("split", "train") or "train",
                 int(r.get("n_residues") or 0)) for r in rows]
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(MODEL_EXTENSIONS))
    if not files:
        raise InputError(f"{folder}: no MANIFEST.tsv and no PDB/mmCIF files.")
    return [(os.path.join(folder, f), "train", 0) for f in files]


def make_jobs(models: list[tuple[str, str, int]], variants: dict[str, int], seed: int, resolution_range=(2.5, 7.0),
              mrc_splits=("val", "test"), big_residues: int = 3000,
              solvent_share: float = sm.SOLVENT_SHARE) -> list[Job]:
    """One job per (structure, variant); structures bigger than ``big_residues`` get 3x the variants (crops)."""
    jobs = []
    for path, split, n_res in models:
        count = variants.get(split, 0) * (3 if n_res > big_residues else 1)
        name = os.path.basename(path).split(".")[0]
        for k in range(count):
            job_seed = zlib.crc32(f"{name}:{k}:{seed}".encode()) & 0x7FFFFFFF
            jobs.append(Job(path, split, k, job_seed, tuple(resolution_range), split in mrc_splits, solvent_share))
    return jobs


def _save_npz(path: str, **arrays) -> None:
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def pair_arrays(input_1a, targets, masks, noise_stats) -> dict:
    """The arrays stored for one pair (float16 halves the disk and memory footprint; 1e-3 relative precision)."""
    return {"input": input_1a.astype(np.float16),
            "target_tight": targets["tight"].astype(np.float16), "target_wide": targets["wide"].astype(np.float16),
            "target_sharp": targets.get("sharp", targets["tight"]).astype(np.float16),
            "mask_tight": masks["tight"].astype(np.float16), "mask_wide": masks["wide"].astype(np.float16),
            "noise_mean": np.float32(noise_stats[0]), "noise_std": np.float32(noise_stats[1])}


def run_job(job: Job, out: str) -> dict:
    """Simulate one pair and write it (skipped when its files already exist, unless its wide target was made by an
    older definition that differs for it: :func:`~deepemhancer.training.simulate.wide_target_outdated`)."""
    name = f"{os.path.basename(job.path).split('.')[0]}_v{job.variant}"
    folder = os.path.join(out, job.split)
    os.makedirs(folder, exist_ok=True)
    npz, meta = os.path.join(folder, name + ".npz"), os.path.join(folder, name + ".json")
    if os.path.exists(npz) and os.path.exists(meta):
        with open(meta) as f:
            cached = json.load(f)
        if not sm.wide_target_outdated(cached):
            return cached
    atoms = sm.load_atoms(job.path)
    rng = np.random.default_rng(job.seed)
    params = sm.draw_params(rng, job.seed, resolution_range=job.resolution_range, solvent_share=job.solvent_share)
    pair = sm.simulate_pair(atoms, params)
    _save_npz(npz, **pair_arrays(pair.input_1a, pair.targets_1a, pair.masks_1a, pair.noise_stats))
    entry = pair.summary()
    entry.update(name=name, structure=os.path.basename(job.path), split=job.split,
                 file=os.path.relpath(npz, out), source="simulated")
    if job.write_mrc:
        mdir = os.path.join(out, "mrc", job.split)
        os.makedirs(mdir, exist_ok=True)
        grid = MapGrid(pair.half1.shape, (pair.voxel_size,) * 3)
        files = {}
        for label, data in (("half1", pair.half1), ("half2", pair.half2), ("groundtruth", pair.groundtruth),
                            ("envelope", pair.envelope),
                            ("target_tight", pair.groundtruth * pair.envelope)):
            p = os.path.join(mdir, f"{name}_{label}.mrc")
            write_map(p, data, grid, overwrite=True, label=f"deepemhancer-train simulated {label}")
            files[label] = os.path.relpath(p, out)
        entry["mrc"] = files
    _write_json(meta, entry)
    return entry


def write_index(out: str, entries: list[dict], extra: dict | None = None) -> str:
    entries = sorted(entries, key=lambda e: (SPLITS.index(e["split"]) if e["split"] in SPLITS else 9, e["name"]))
    index = {"version": 1, "created_by": "deepemhancer-train prepare", "voxel_size": sm.MODEL_VOXEL,
             "target_definition": "see deepemhancer/training/targets.py", "pairs": entries}
    if extra:
        index.update(extra)
    path = os.path.join(out, INDEX)
    _write_json(path, index)
    return path


def _existing_index(out: str) -> dict:
    """The folder's index (its pairs and the recipe they were made with), or an empty one."""
    path = os.path.join(out, INDEX)
    if not os.path.exists(path):
        return {"pairs": []}
    with open(path) as f:
        return json.load(f)


def _entries_by_file(index: dict) -> dict[str, dict]:
    return {e["file"]: e for e in index["pairs"]}


def prepare_simulated(models_dir: str, out: str, *, variants: dict[str, int], seed: int = 0,
                      resolution_range=(2.5, 7.0), workers: int = 1, mrc_splits=("val", "test"),
                      limit: int | None = None, solvent_share: float = sm.SOLVENT_SHARE, log=print) -> str:
    """Simulate pairs for every structure of ``models_dir`` (split from its MANIFEST.tsv) into ``out``.

    ``out`` is a cache (existing pairs are kept, except those whose wide target an older definition made
    differently: they are simulated again, identical but for that target), so it refuses a ``solvent_share`` other
    than the one its pairs were made with; folders made before the share was recorded hold in-vacuo pairs only when
    made before step 4b."""
    os.makedirs(out, exist_ok=True)
    existing = _existing_index(out)
    made_with = existing.get("solvent_share")  # None: made before the share was recorded
    if made_with is not None and made_with != solvent_share:
        raise InputError(f"{out} holds pairs made with --solvent-share {made_with}; give another output folder for "
                         f"--solvent-share {solvent_share}.")
    models = read_manifest(models_dir)
    jobs = make_jobs(models, variants, seed, resolution_range, mrc_splits, solvent_share=solvent_share)
    recipe = {"models_dir": os.path.abspath(models_dir), "seed": seed, "resolution_range": list(resolution_range),
              "solvent_share": solvent_share}
    if limit:
        jobs = jobs[:limit]
    entries = _entries_by_file(existing)
    done = 0
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(run_job, j, out) for j in jobs]
            for fut in futures:
                e = fut.result()
                entries[e["file"]] = e
                done += 1
                log(f"[{done}/{len(jobs)}] {e['split']} {e['name']} d={e['fsc_resolution']:.2f} A "
                    f"v={e['voxel_size']:.2f} A shape={e['shape_1a']}")
    else:
        for j in jobs:
            try:
                e = run_job(j, out)
            except InputError as exc:
                log(f"skipped {j.path} variant {j.variant}: {exc}")
                continue
            entries[e["file"]] = e
            done += 1
            log(f"[{done}/{len(jobs)}] {e['split']} {e['name']} d={e['fsc_resolution']:.2f} A "
                f"v={e['voxel_size']:.2f} A shape={e['shape_1a']}")
            if done % 10 == 0:
                write_index(out, list(entries.values()), recipe)
    return write_index(out, list(entries.values()), recipe)


def prepare_real(folder: str, out: str, *, split: str = "train", log=print) -> str:
    """Real pairs from a user folder: ``NAME_half1.mrc`` + ``NAME_half2.mrc`` (or ``NAME_input.mrc``) and
    ``NAME_target.mrc`` (e.g. a LocScale map from the deposited model), optional ``NAME_mask.mrc``; all on one grid.

    The input goes through inference's normalisation and resampling; the target is put on the fixed scale of
    :func:`targets.normalize_real_target` (tight and wide targets are the same map here).
    """
    names = sorted({f[:-len("_target.mrc")] for f in os.listdir(folder) if f.endswith("_target.mrc")})
    if not names:
        raise InputError(f"{folder}: no NAME_target.mrc files; see `deepemhancer-train prepare --help`.")
    os.makedirs(os.path.join(out, split), exist_ok=True)
    entries = _entries_by_file(_existing_index(out))
    for name in names:
        base = os.path.join(folder, name)
        if os.path.exists(base + "_half1.mrc"):
            h1, grid = read_map(base + "_half1.mrc")
            h2, _ = read_map(base + "_half2.mrc")
            data = 0.5 * (h1 + h2)
        elif os.path.exists(base + "_input.mrc"):
            data, grid = read_map(base + "_input.mrc")
        else:
            raise InputError(f"{name}: neither {name}_half1.mrc/{name}_half2.mrc nor {name}_input.mrc found.")
        target, tgrid = read_map(base + "_target.mrc")
        if target.shape != data.shape:
            raise InputError(f"{name}: target shape {target.shape} differs from input shape {data.shape}.")
        mask = read_map(base + "_mask.mrc")[0] if os.path.exists(base + "_mask.mrc") else None
        v = grid.sampling
        stats = norm.estimate_noise_stats(data, voxel_size=v)
        x = to_voxel_size(norm.normalize(data, stats), v, sm.MODEL_VOXEL)
        t = to_voxel_size(target, v, sm.MODEL_VOXEL)
        m = None if mask is None else np.clip(to_voxel_size(mask, v, sm.MODEL_VOXEL), 0, 1)
        t = tg.normalize_real_target(t, m)
        m = (t > 0).astype(np.float32) if m is None else m
        npz = os.path.join(out, split, name + ".npz")
        _save_npz(npz, **pair_arrays(x, {"tight": t, "wide": t}, {"tight": m, "wide": m}, (stats.mean, stats.std)))
        e = {"name": name, "split": split, "file": os.path.relpath(npz, out), "source": os.path.abspath(base),
             "voxel_size": v, "shape_1a": list(x.shape), "fsc_resolution": None,
             "noise_stats": [stats.mean, stats.std], "noise_method": "auto"}
        _write_json(os.path.join(out, split, name + ".json"), e)
        entries[e["file"]] = e
        log(f"{split} {name}: {x.shape} at 1 A")
    return write_index(out, list(entries.values()))


def load_index(folder: str) -> dict:
    path = os.path.join(folder, INDEX)
    if not os.path.exists(path):
        raise InputError(f"{folder}: no {INDEX}; run `deepemhancer-train prepare` first.")
    with open(path) as f:
        return json.load(f)
