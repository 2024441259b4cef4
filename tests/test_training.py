"""Training pipeline: simulated pairs have the physics we claim, and a tiny training run resumes."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from deepemhancer.resample import shape_for_voxel_size
from deepemhancer.training import simulate as sm

DATA = os.path.join(os.path.dirname(__file__), "data")
UBIQUITIN = os.path.join(DATA, "training_1ubi.pdb.gz")  # PDB 1UBI, from MDAnalysisTests (LGPL-3.0-or-later)


@pytest.fixture(scope="module")
def atoms():
    return sm.load_atoms(UBIQUITIN)


def _pair(atoms, resolution, voxel=1.0, **extra):
    params = sm.SimulationParams(seed=3, resolution=resolution, voxel_size=voxel, b_global=60, margin=12,
                                 micelle="micelle", micelle_level=0.5, n_blobs=2, noise_b=20, noise_lowfreq=0.5,
                                 **extra)
    return sm.simulate_pair(atoms, params)


@pytest.fixture(scope="module")
def pair3(atoms):
    return _pair(atoms, 3.0)


def test_atoms_have_no_hydrogens_or_waters(atoms):
    assert atoms.polymer.all()  # ubiquitin: waters dropped, no ligands
    assert all(e.atomic_number > 1 for e in atoms.elements)
    assert len(atoms.xyz) == 602


def test_half_maps_carry_independent_noise(pair3):
    h1, h2 = pair3.half1, pair3.half2
    assert h1.shape == h2.shape and not np.allclose(h1, h2)
    freq, curve = sm.fsc(h1, h2, pair3.voxel_size)
    assert curve[1] > 0.9                                  # low resolution: the shared signal dominates
    beyond = freq > 1 / 2.4                                 # well past the 3 A resolution: noise only
    assert abs(float(curve[beyond].mean())) < 0.05


def test_half_map_fsc_follows_the_chosen_resolution(atoms, pair3):
    pair6 = _pair(atoms, 6.0)
    assert pair3.fsc_resolution == pytest.approx(3.0, rel=0.15)
    assert pair6.fsc_resolution == pytest.approx(6.0, rel=0.25)  # a 62-voxel box: the curve is noisy
    assert pair6.fsc_resolution > pair3.fsc_resolution + 2


def test_target_is_zero_outside_the_tight_mask(pair3):
    target, mask = pair3.targets_1a["tight"], pair3.masks_1a["tight"]
    outside = mask == 0
    assert outside.mean() > 0.3
    assert np.all(target[outside] == 0)
    inside = target[mask > 0.5]
    assert np.percentile(inside, 95) == pytest.approx(1.0, rel=0.01)  # the documented scale
    # the wide mask keeps more of the box
    assert (pair3.masks_1a["wide"] > 0.5).sum() > 1.5 * (mask > 0.5).sum()


def test_micelle_is_in_the_input_and_not_in_the_target(pair3):
    x, target, mask = pair3.input_1a, pair3.targets_1a["tight"], pair3.masks_1a["tight"]
    extra = pair3.nonprotein_1a
    region = (extra > 0.5 * extra.max()) & (mask == 0)
    assert region.sum() > 100
    assert float(x[region].mean()) > 0.1       # well above the noise (SD 0.1 per voxel, mean of >100 voxels)
    assert np.all(target[region] == 0)


def test_input_is_resampled_to_1A_and_normalised(atoms):
    pair = _pair(atoms, 4.0, voxel=1.4)
    assert pair.input_1a.shape == shape_for_voxel_size(pair.half1.shape, 1.4, 1.0)
    assert pair.targets_1a["tight"].shape == pair.input_1a.shape
    solvent = pair.input_1a[(pair.masks_1a["wide"] == 0) & (pair.nonprotein_1a < 1e-3)]
    assert float(solvent.std()) == pytest.approx(0.1, rel=0.3)  # inference's normalisation: noise SD 0.1


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared folder from a two-structure MANIFEST (same molecule under two names: one train, one val)."""
    root = tmp_path_factory.mktemp("prep")
    models = root / "models"
    models.mkdir()
    for name in ("ubqa", "ubqb"):
        shutil.copy(UBIQUITIN, models / f"{name}.pdb.gz")
    (models / "MANIFEST.tsv").write_text("file\tsplit\tn_residues\nubqa.pdb.gz\ttrain\t76\nubqb.pdb.gz\tval\t76\n")
    from deepemhancer.training.cli import main
    out = root / "pairs"
    assert main(["prepare", "--models", str(models), "-o", str(out), "--variants", "train=2,val=1",
                 "--resolution", "3", "5", "--mrc-splits", "val"]) == 0
    return out


def test_prepare_writes_index_npz_and_mrc(prepared):
    index = json.loads((prepared / "index.json").read_text())
    splits = [e["split"] for e in index["pairs"]]
    assert splits.count("train") == 2 and splits.count("val") == 1
    for e in index["pairs"]:
        with np.load(prepared / e["file"]) as z:
            assert z["input"].shape == z["target_tight"].shape == tuple(e["shape_1a"])
        assert 2.5 < e["fsc_resolution"] < 6
    val = [e for e in index["pairs"] if e["split"] == "val"][0]
    assert set(val["mrc"]) >= {"half1", "half2", "groundtruth", "envelope"}
    assert os.path.exists(prepared / val["mrc"]["half1"])


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_fit_writes_csv_checkpoint_and_resumes(prepared, tmp_path):
    from deepemhancer.models import find_model, load_model
    from deepemhancer.training.cli import main
    run = tmp_path / "run"
    common = ["fit", "--pairs", str(prepared), "-o", str(run), "--filters", "4,8", "--cube", "16", "--batch", "2",
              "--steps-per-epoch", "2", "--val-cubes", "4", "--quiet"]
    assert main(common + ["--epochs", "2"]) == 0
    assert [r["epoch"] for r in _rows(run / "log.csv")] == ["1", "2"]
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and state["step"] == 4 and "rng" in state
    first_rng = state["rng"]
    assert main(common + ["--epochs", "3"]) == 0           # same command, more epochs: resumes
    rows = _rows(run / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[2]["wall_seconds"]) > float(rows[1]["wall_seconds"])
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 3 and state["step"] == 6 and state["rng"] != first_rng
    loaded = load_model(find_model("tightTarget", str(run / "final")))
    meta = loaded.metadata
    assert meta.voxel_size == 1.0 and meta.cube_size == 16 and meta.normalization == "noise"
    assert meta.training["epochs"] == 3 and meta.training["steps"] == 6
    out = loaded.predict(np.zeros((1, 16, 16, 16, 1), np.float32))
    assert out.shape == (1, 16, 16, 16, 1)
    table = tmp_path / "val.csv"
    assert main(["evaluate", "--pairs", str(prepared), "--model", str(run / "final"), "--split", "val",
                 "--csv", str(table)]) == 0
    (row,) = _rows(table)
    assert -1 <= float(row["cc_output"]) <= 1 and 0.3 < float(row["cc_input"]) < 1


def test_noise_cubes_have_zero_targets_and_the_asked_noise_level(prepared):
    from deepemhancer.training.train import TrainConfig, correlated_noise, load_split, make_batch
    rng = np.random.default_rng(1)
    sds = [correlated_noise(16, rng, (0.05, 0.2)).std() for _ in range(50)]
    assert 0.045 < min(sds) and max(sds) < 0.22 and np.std(sds) > 0.02      # spread over the range
    cfg = TrainConfig(cube=16, batch=64, filters=(4, 8), noise_cubes=0.5, signal_fraction=1.0)
    x, y = make_batch(load_split([str(prepared)], "train", cfg, log=lambda *a: None), cfg, rng)
    empty = np.all(y == 0, axis=(1, 2, 3, 4))               # every other cube is centred on the molecule
    assert 20 <= empty.sum() <= 44                          # about half the cubes are pure noise with target 0
    assert (np.abs(x[empty]).max(axis=(1, 2, 3, 4)) > 0.05).all()


def test_resuming_a_run_whose_log_lacks_a_newer_column(prepared, tmp_path):
    from deepemhancer.training.cli import main
    run = tmp_path / "run"
    common = ["fit", "--pairs", str(prepared), "-o", str(run), "--filters", "4,8", "--cube", "16", "--batch", "2",
              "--steps-per-epoch", "1", "--val-cubes", "2", "--quiet"]
    assert main(common + ["--epochs", "1"]) == 0
    rows = _rows(run / "log.csv")
    with open(run / "log.csv", "w", newline="") as f:       # a log written before val_noise_rms existed
        fields = [k for k in rows[0] if k != "val_noise_rms"]
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    assert main(common + ["--epochs", "2"]) == 0
    with open(run / "log.csv") as f:
        lines = list(csv.reader(f))
    assert [len(line) for line in lines] == [len(fields)] * 3


def test_fit_refuses_to_resume_with_other_settings(prepared, tmp_path):
    from deepemhancer.training.cli import main
    run = tmp_path / "run"
    base = ["fit", "--pairs", str(prepared), "-o", str(run), "--cube", "16", "--batch", "2", "--epochs", "1",
            "--steps-per-epoch", "1", "--val-cubes", "2", "--quiet"]
    assert main(base + ["--filters", "4,8"]) == 0
    assert main(base + ["--filters", "8,16"]) == 2


def test_kinds_select_targets_normalisation_and_resolution(prepared):
    from deepemhancer.training.train import TrainConfig, load_split
    index = json.loads((prepared / "index.json").read_text())
    train = [e for e in index["pairs"] if e["split"] == "train"]
    quiet = lambda *a: None  # noqa: E731
    tight = load_split([str(prepared)], "train", TrainConfig(kind="tightTarget", cube=16), quiet)
    wide = load_split([str(prepared)], "train", TrainConfig(kind="wideTarget", cube=16), quiet)
    assert (wide[0].y > 0).sum() > (tight[0].y > 0).sum()          # the wide mask keeps more density
    masked = load_split([str(prepared)], "train", TrainConfig(kind="masked", cube=16), quiet)
    with np.load(prepared / train[0]["file"]) as z:
        outside = z["mask_wide"] < 0.01
    assert np.all(masked[0].x[outside] == 0)                       # binary-mask normalisation zeroes the outside
    cfg = TrainConfig(kind="highRes", cube=16, max_resolution=4.0)
    if any(e["fsc_resolution"] < 4.0 for e in train):
        assert all(v.resolution < 4.0 for v in load_split([str(prepared)], "train", cfg, quiet))
