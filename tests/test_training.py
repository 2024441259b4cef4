"""Training pipeline: simulated pairs have the physics we claim, and a tiny training run resumes."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from scipy import ndimage

from deepemhancer.errors import InputError
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


def _fit_with_loss_term(prepared, tmp_path, setting: str, value: float) -> None:
    """A tiny real run with one extra loss term: its validation loss (the same objective) exceeds the MAE, and the
    run's config records the setting."""
    from deepemhancer.training.cli import main
    run = tmp_path / "run"
    assert main(["fit", "--pairs", str(prepared), "-o", str(run), "--filters", "4,8", "--cube", "16", "--batch",
                 "2", "--steps-per-epoch", "2", "--val-cubes", "4", "--epochs", "1",
                 "--" + setting.replace("_", "-"), str(value), "--quiet"]) == 0
    (row,) = _rows(run / "log.csv")
    assert float(row["val_loss"]) > float(row["val_mae"]) > 0
    assert json.loads((run / "config.json").read_text())[setting] == value


def test_keep_weight_charges_a_shortfall_only_where_the_target_has_density(prepared, tmp_path):
    import keras
    from deepemhancer.training.train import keep_loss
    target = np.array([0.0, 0.0, 1.0, 2.0], np.float32)           # solvent, solvent, weak and strong density
    for weight in (0.0, 1.0):
        below, above = keep_loss(target, target - 0.5, weight, np), keep_loss(target, target + 0.5, weight, np)
        assert above == pytest.approx(0.5)                          # an excess costs what it costs in MAE
        assert below == pytest.approx(0.5 + weight * 0.25)          # a shortfall on the 2 density voxels costs more
        tensor = keras.ops.convert_to_numpy(keep_loss(keras.ops.convert_to_tensor(target),
                                                      keras.ops.convert_to_tensor(target - 0.5), weight, keras.ops))
        assert float(tensor) == pytest.approx(below)               # training and validation use the same objective
    _fit_with_loss_term(prepared, tmp_path, "keep_weight", 1.0)


def test_shell_correlation_loss_scores_detail_not_scale(prepared, tmp_path):
    import keras
    from scipy import ndimage
    from deepemhancer.training.train import shell_correlation_loss
    rng = np.random.default_rng(3)
    target = ndimage.gaussian_filter(rng.normal(size=(4, 16, 16, 16, 1)), (0, 1, 1, 1, 0)).astype(np.float32)
    target[3] = 0.0                                                  # a solvent cube: no density, not counted
    noise = rng.normal(size=target.shape).astype(np.float32)
    assert shell_correlation_loss(target, 2.5 * target, np) == pytest.approx(0.0, abs=1e-6)   # blind to scale
    unrelated = shell_correlation_loss(target, noise, np)
    assert 0.8 < unrelated < 1.2                                      # no correlation in any shell
    assert shell_correlation_loss(target, target + 0.5 * noise, np) < unrelated
    as_tensor = keras.ops.convert_to_numpy(shell_correlation_loss(keras.ops.convert_to_tensor(target),
                                                                  keras.ops.convert_to_tensor(noise), keras.ops))
    assert float(as_tensor) == pytest.approx(unrelated, rel=1e-4)    # training and validation: the same objective
    _fit_with_loss_term(prepared, tmp_path, "shell_weight", 0.1)


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


def test_zoomed_cubes_show_the_map_as_on_a_finer_grid(prepared):
    """--zoom: a cube cut at z = 1.25 shows a blob 1.25 times wider (a 0.8 A grid), input and target alike, with no
    edge ringing; maps too small for the region give a plain cube; a zoom of (1, 1) draws exactly as no zoom (runs
    made before the option resume on the same random stream), another zoom gives other cubes."""
    from deepemhancer.training.train import TrainConfig, Volume, cut_cube, load_split, make_batch
    n, sigma = 64, 3.0
    zz, yy, xx = np.mgrid[:n, :n, :n] - n // 2
    blob = np.exp(-(xx ** 2 + yy ** 2 + zz ** 2) / (2 * sigma ** 2)).astype(np.float32)
    vol = Volume("blob", blob, 2 * blob, blob > 0.5, signal_voxels=np.array([[n // 2] * 3]))

    def blob_error(cube, width):  # largest difference from a Gaussian of that width at the cube's centroid
        grid = np.indices(cube.shape)
        centre = [(g * cube).sum() / cube.sum() for g in grid]
        expected = np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre)) / (2 * width ** 2))
        return float(np.abs(cube - expected).max())

    x, y = cut_cube(vol, 32, np.random.default_rng(0), signal=True, zoom=1.25)
    assert x.shape == y.shape == (32, 32, 32) and np.allclose(y, 2 * x, atol=1e-5)
    # 1.25 times wider, and no ringing anywhere (the margin took it)
    assert blob_error(x, 1.25 * sigma) < 0.01 < blob_error(x, sigma)
    centred = blob[14:50, 14:50, 14:50]   # 36^3: too small for a 26^3 region and its margins
    small = Volume("small", centred, centred, None, signal_voxels=np.array([[18] * 3]))
    x, _ = cut_cube(small, 32, np.random.default_rng(0), signal=True, zoom=1.25)
    assert x.shape == (32,) * 3 and blob_error(x, sigma) < 0.01
    cfg = TrainConfig(cube=16, batch=4, filters=(4, 8))
    vols = load_split([str(prepared)], "train", cfg, log=lambda *a: None)
    plain = make_batch(vols, cfg, np.random.default_rng(5))
    again = make_batch(vols, TrainConfig(cube=16, batch=4, filters=(4, 8), zoom=(1.0, 1.0)), np.random.default_rng(5))
    assert np.array_equal(plain[0], again[0])
    zoomed = make_batch(vols, TrainConfig(cube=16, batch=4, filters=(4, 8), zoom=(1.2, 1.3)), np.random.default_rng(5))
    assert zoomed[0].shape == plain[0].shape and not np.allclose(zoomed[0], plain[0])
    with pytest.raises(InputError, match="zoom"):
        TrainConfig(zoom=(0.8, 1.2))


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
        # more than a voxel away from the binary mask (the normalisation dilates it by one voxel)
        outside = ~ndimage.binary_dilation(z["mask_wide"] > 0.5, np.ones((3, 3, 3)), iterations=2)
    assert outside.mean() > 0.2
    assert np.all(masked[0].x[outside] == 0)                       # binary-mask normalisation zeroes the outside
    cfg = TrainConfig(kind="highRes", cube=16, max_resolution=4.0)
    if any(e["fsc_resolution"] < 4.0 for e in train):
        assert all(v.resolution < 4.0 for v in load_split([str(prepared)], "train", cfg, quiet))


def test_sharp_below_blends_highres_target_into_finer_pairs_only(prepared):
    from deepemhancer.training.train import TrainConfig, load_split, sharp_share
    quiet = lambda *a: None  # noqa: E731
    tight = load_split([str(prepared)], "train", TrainConfig(kind="tightTarget", cube=16), quiet)
    sharp = load_split([str(prepared)], "train", TrainConfig(kind="highRes", cube=16, max_resolution=99.0), quiet)
    blended = load_split([str(prepared)], "train", TrainConfig(kind="tightTarget", cube=16, sharp_below=(9.0, 1.0)),
                         quiet)
    for t, s, b in zip(tight, sharp, blended):
        share = sharp_share(t.resolution, (9.0, 1.0))
        assert 0 < share < 1 and not np.array_equal(t.y, s.y)
        expected = (1 - share) * t.y.astype(np.float32) + share * s.y.astype(np.float32)
        assert np.allclose(b.y.astype(np.float32), expected, atol=2e-3)
        assert np.array_equal(b.x, t.x)                          # the input is untouched
    coarse = load_split([str(prepared)], "train", TrainConfig(kind="tightTarget", cube=16, sharp_below=(1.5, 1.0)),
                        quiet)                                   # every pair is coarser than 1.5 A: no change
    assert all(np.array_equal(c.y, t.y) for c, t in zip(coarse, tight))
    assert sharp_share(2.0, (3.5, 2.5)) == 1.0 and sharp_share(3.0, (3.5, 2.5)) == 0.5
    assert sharp_share(None, (3.5, 2.5)) == 0.0
    for bad in ({"kind": "wideTarget", "sharp_below": (3.5, 2.5)}, {"kind": "tightTarget", "sharp_below": (2.5, 3.5)}):
        with pytest.raises(InputError):
            TrainConfig(**bad)


def test_masked_kind_grows_the_input_mask_per_map_reproducibly(prepared):
    from deepemhancer.training.train import TrainConfig, load_split
    quiet = lambda *a: None  # noqa: E731
    plain = load_split([str(prepared)], "train", TrainConfig(kind="masked", cube=16), quiet)
    grown = load_split([str(prepared)], "train", TrainConfig(kind="masked", cube=16, mask_dilation=(4, 6)), quiet)
    again = load_split([str(prepared)], "train", TrainConfig(kind="masked", cube=16, mask_dilation=(4, 6)), quiet)
    for p, g, a in zip(plain, grown, again):
        assert (g.x != 0).sum() > 1.2 * (p.x != 0).sum()    # a wider mask: more of the box is normalised input
        assert np.array_equal(g.x, a.x)                      # the same draw on every load (resume)
    assert np.array_equal(plain[0].y, grown[0].y)            # the target does not depend on the user's mask
    with pytest.raises(InputError):
        TrainConfig(kind="masked", mask_dilation=(3, 1))
# ------------------------------------------------------------------ domain randomisation and targets (issue 15)
def _atom_voxels_1a(pair, atoms):
    """Voxel indices (z, y, x) of the polymer atoms on the 1 A grid of ``pair`` (positions redone as simulate_pair
    does: rotation about the centre of mass, then the box origin)."""
    from scipy.spatial.transform import Rotation
    p = pair.params
    rot = Rotation.from_quat(p.rotation).as_matrix()
    xyz = (atoms.xyz - atoms.xyz[atoms.polymer].mean(axis=0)) @ rot.T
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    n = pair.half1.shape[0]
    xyz = xyz - ((lo + hi) / 2 - n * p.voxel_size / 2)
    idx = np.rint(xyz[:, ::-1] / sm.MODEL_VOXEL).astype(int)
    return idx[np.all((idx >= 0) & (idx < np.array(pair.input_1a.shape)), axis=1)]


def test_every_modelled_atom_stays_in_the_target_even_where_flexible(atoms):
    # a flexible extension at ~11 A on a 3 A map: its atoms are weak in the data but must stay in every target
    pair = _pair(atoms, 3.0, flexible_factor=4.3, flexible_radius=25.0)
    assert pair.local_resolution[2] > 9.0
    idx = _atom_voxels_1a(pair, atoms)
    for kind in ("tight", "wide", "sharp"):
        target = pair.targets_1a[kind][idx[:, 0], idx[:, 1], idx[:, 2]]
        assert (target > 0.02).mean() > 0.99, kind
    assert (pair.masks_1a["tight"][idx[:, 0], idx[:, 1], idx[:, 2]] > 0.99).mean() > 0.99


def test_tight_mask_grows_with_the_local_resolution():
    from deepemhancer.training import targets as tg
    atoms_xyz = np.array([[10.0, 20.0, 20.0], [30.0, 20.0, 20.0]])   # (x, y, z) voxels of 1 A
    masks = tg.envelope_masks(atoms_xyz, (40, 40, 40), 1.0, np.array([3.0, 12.0]))
    tight = masks["tight"][20, 20]                               # the line through both atoms, along x
    assert tight[13] == 1 and tight[16:20].max() == 0            # the sharp atom: 3 A full weight, 3 A edge
    assert tight[25] > 0.9 and tight[22] > 0                     # the 12 A atom: 4.2 A full weight, 4.2 A edge
    assert np.all(np.diff(masks["wide"][20, 20, 30:]) <= 0)      # monotone away from the atom


def test_wide_target_keeps_unmodelled_density_the_tight_one_removes(pair3):
    extra = pair3.nonprotein_1a
    region = (extra > 0.5 * extra.max()) & (pair3.masks_1a["wide"] < 0.01)
    assert region.sum() > 50
    assert np.all(pair3.targets_1a["tight"][region] == 0)
    assert float(pair3.targets_1a["wide"][region].mean()) > 0.05
    inside = pair3.masks_1a["tight"] > 0.5                       # one scale for tight and wide
    assert np.allclose(pair3.targets_1a["wide"][inside & (extra == 0)], pair3.targets_1a["tight"][inside & (extra == 0)],
                       atol=1e-6)


def test_wide_target_keeps_no_unmodelled_density_the_input_does_not_show(atoms, pair3):
    # the depositor's mask cut the micelle out of the half maps: a wide target that kept it would teach the network
    # to invent a micelle from nothing
    masked = _pair(atoms, 3.0, depositor_mask=True)
    extra = masked.nonprotein_1a
    region = (extra > 0.5 * extra.max()) & (masked.masks_1a["wide"] < 0.01)
    assert region.sum() > 50
    assert float(np.abs(masked.targets_1a["wide"][region]).max()) < 1e-3
    assert float(pair3.targets_1a["wide"][region].mean()) > 0.05     # the same micelle, unmasked, is kept
    protein = (masked.masks_1a["tight"] > 0.5) & (extra == 0)         # the protein's target is unchanged
    assert np.allclose(masked.targets_1a["wide"][protein], masked.targets_1a["tight"][protein], atol=1e-6)


def _shell_power(data, voxel, lo, hi):
    s = sm.radial_frequency(data.shape[0], voxel)
    f = np.abs(np.fft.rfftn(data)) ** 2
    return float(f[(s >= lo) & (s < hi)].mean())


def test_sharp_target_has_more_high_resolution_power(pair3):
    t, h = pair3.targets_1a["tight"], pair3.targets_1a["sharp"]
    ratio_low = _shell_power(h, 1.0, 1 / 20, 1 / 10) / _shell_power(t, 1.0, 1 / 20, 1 / 10)
    ratio_high = _shell_power(h, 1.0, 1 / 3.5, 1 / 2.5) / _shell_power(t, 1.0, 1 / 3.5, 1 / 2.5)
    assert ratio_high > 1.3 * ratio_low


@pytest.mark.parametrize("model", sm.NOISE_MODELS)
def test_every_noise_model_reaches_the_chosen_resolution(atoms, model):
    pair = _pair(atoms, 4.0, noise_model=model)
    assert pair.fsc_resolution == pytest.approx(4.0, rel=0.2)
    diff = pair.half1 - pair.half2
    assert float(np.abs(diff).mean()) > 0                       # independent noise in the two halves


def test_noise_models_differ_in_their_spectrum():
    rng = np.random.default_rng(0)
    p = {m: sm.SimulationParams(seed=0, noise_model=m, noise_b=0, noise_lowfreq=2.0) for m in sm.NOISE_MODELS}
    s = sm.radial_frequency(64, 1.0)
    ctf = sm.noise_colour(p["ctf"], 64, 1.0, rng)
    white = sm.noise_colour(p["white"], 64, 1.0, rng)
    assert np.allclose(white, 1)
    low, mid = (s > 0.02) & (s < 0.04), (s > 0.2) & (s < 0.3)
    assert ctf[low].mean() > 1.5 * ctf[mid].mean()              # excess low-frequency noise over a CTF floor


def test_preferred_orientation_blurs_along_its_axis(atoms):
    base = dict(anisotropy_axis=[0.0, 0.0, 1.0], rotation=[0.0, 0.0, 0.0, 1.0])
    iso = _pair(atoms, 3.0, **base)
    aniso = _pair(atoms, 3.0, anisotropy_b=300.0, **base)
    sx, sy, sz = sm.frequency_components(iso.half1.shape[0], iso.voxel_size)
    s = sm.radial_frequency(iso.half1.shape[0], iso.voxel_size)
    band = (s > 1 / 5) & (s < 1 / 3.5)
    along, across = band & (np.abs(sz) > 0.9 * s), band & (np.abs(sz) < 0.3 * s)

    def ratio(pair):
        f = np.abs(np.fft.rfftn(pair.groundtruth * pair.envelope)) ** 2
        return float(f[along].mean() / f[across].mean())
    assert ratio(aniso) < 0.6 * ratio(iso)


def test_sharpened_inputs_have_a_flatter_falloff(atoms):
    plain = _pair(atoms, 3.5)
    sharp = _pair(atoms, 3.5, sharpened_b=60.0)
    avg = lambda p: 0.5 * (p.half1 + p.half2)  # noqa: E731
    v = plain.voxel_size
    fall = lambda m: _shell_power(m, v, 1 / 5, 1 / 4) / _shell_power(m, v, 1 / 12, 1 / 8)  # noqa: E731
    assert fall(avg(sharp)) > 2 * fall(avg(plain))
    assert _shell_power(avg(sharp), v, 1 / 3.0, 1 / 2.5) < 0.5 * _shell_power(avg(plain), v, 1 / 3.0, 1 / 2.5)


def test_domains_give_several_local_resolutions(atoms):
    one = _pair(atoms, 3.0)
    many = _pair(atoms, 3.0, domains=4, domain_spread=0.8)
    assert many.local_resolution[2] > one.local_resolution[2]


def test_draw_params_covers_the_randomised_recipe():
    draws = [sm.draw_params(np.random.default_rng(k), k) for k in range(300)]
    assert {d.noise_model for d in draws} == set(sm.NOISE_MODELS)
    assert 0.15 < np.mean([d.anisotropy_b > 0 for d in draws]) < 0.35
    assert 0.07 < np.mean([d.sharpened_b > 0 for d in draws]) < 0.25
    assert 0.1 < np.mean([d.margin > 30 for d in draws]) < 0.3
    flexible = [0.85 * d.resolution * d.flexible_factor for d in draws if d.flexible_factor > 1]
    assert 0.5 < len(flexible) / 300 < 0.7 and 7.9 < min(flexible) and max(flexible) < 12.1
    solvent = [d.solvent_fraction for d in draws if d.solvent_fraction > 0]
    assert 0.78 < len(solvent) / 300 < 0.92 and 0.25 <= min(solvent) and max(solvent) <= 0.7


def test_solvent_share_zero_makes_the_in_vacuo_maps_of_before_step_4b():
    """The solvent draws come last: share 0 changes nothing else of a seed's recipe, so folders prepared before
    step 4b (the in-vacuo pairs of campaigns v1-v2) are made again exactly."""
    from dataclasses import asdict
    for k in range(20):
        with_solvent = asdict(sm.draw_params(np.random.default_rng(k), k))
        in_vacuo = asdict(sm.draw_params(np.random.default_rng(k), k, solvent_share=0.0))
        assert in_vacuo["solvent_fraction"] == 0.0
        differ = {key for key in in_vacuo if in_vacuo[key] != with_solvent[key]}
        assert differ <= {"solvent_fraction", "solvent_radius", "solvent_b"}


def test_prepare_refuses_another_solvent_share_in_the_same_folder(prepared):
    from deepemhancer.training.cli import main
    models = prepared.parent / "models"
    assert json.loads((prepared / "index.json").read_text())["solvent_share"] == 0.85
    before = (prepared / "index.json").read_text()
    assert main(["prepare", "--models", str(models), "-o", str(prepared), "--variants", "train=2,val=1",
                 "--resolution", "3", "5", "--mrc-splits", "val", "--solvent-share", "0"]) == 2
    assert (prepared / "index.json").read_text() == before


def test_prepare_makes_again_a_pair_whose_wide_target_an_older_definition_made(prepared):
    """A cached pair made before the wide target kept only what the input shows (no ``wide_target_version``) is
    simulated again when that definition differs for it (a depositor-masked input with a micelle), else kept."""
    from deepemhancer.training.cli import main
    from deepemhancer.training.simulate import WIDE_TARGET_VERSION
    models = prepared.parent / "models"
    entries = json.loads((prepared / "index.json").read_text())["pairs"]
    stale, kept = [prepared / e["file"].replace(".npz", ".json") for e in entries[:2]]
    for meta, depositor in ((stale, True), (kept, False)):
        entry = json.loads(meta.read_text())
        del entry["wide_target_version"]
        entry["params"].update(depositor_mask=depositor, zero_faces=0, micelle="micelle")
        meta.write_text(json.dumps(entry))
    assert main(["prepare", "--models", str(models), "-o", str(prepared), "--variants", "train=2,val=1",
                 "--resolution", "3", "5", "--mrc-splits", "val"]) == 0
    assert json.loads(stale.read_text())["wide_target_version"] == WIDE_TARGET_VERSION      # made again
    assert "wide_target_version" not in json.loads(kept.read_text())                         # the cache kept it


def test_displaced_solvent_weakens_low_resolutions_of_the_input_only(atoms):
    """Step 4b: the molecule's mean density drops by the solvent fraction, the low resolutions of the half maps
    lose amplitude as in real maps (60-20 A: about half at f = 0.55) while 6-4 A keeps it, and the targets (model
    maps in vacuo) do not change."""
    plain, solvent = (sm.simulate_pair(atoms, sm.SimulationParams(seed=3, resolution=3.0, b_global=60, margin=12,
                                                                  noise_model="white", solvent_fraction=f))
                      for f in (0.0, 0.55))
    np.testing.assert_array_equal(plain.targets_1a["tight"], solvent.targets_1a["tight"])
    freq = np.fft.fftfreq(plain.half1.shape[0], plain.voxel_size)
    s = np.sqrt(freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + freq[None, None, :] ** 2)

    def amplitude(pair, lo, hi):
        return float(np.abs(np.fft.fftn(0.5 * (pair.half1 + pair.half2)))[(s >= 1 / lo) & (s < 1 / hi)].mean())

    assert 0.3 < amplitude(solvent, 60, 20) / amplitude(plain, 60, 20) < 0.7
    assert amplitude(solvent, 6, 4) / amplitude(plain, 6, 4) == pytest.approx(1.0, abs=0.1)
    no_atoms = sm.excluded_volume_density(plain.half1, np.zeros((0, 3)), 1.0, sm.SimulationParams(seed=0))
    assert not no_atoms.any()


def test_widened_network_computes_what_the_narrow_one_did():
    import keras
    from deepemhancer.network import UNetConfig, build_unet
    from deepemhancer.training.widen import widen_unet
    keras.utils.set_random_seed(4)
    narrow_cfg = UNetConfig(filters=(4, 8), convs_per_block=2, norm_layer="none")
    wide_cfg = UNetConfig(filters=(8, 12), convs_per_block=2, norm_layer="none")
    narrow = build_unet(narrow_cfg)
    for layer in narrow.layers:                              # non-trivial PReLU slopes and biases
        layer.set_weights([w + np.random.default_rng(1).normal(0, 0.1, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 16, 1)).astype(np.float32)
    exact = widen_unet(narrow, narrow_cfg, wide_cfg, noise=0.0)
    assert exact.count_params() > 2 * narrow.count_params()
    ref = np.asarray(narrow.predict_on_batch(x))
    assert np.abs(np.asarray(exact.predict_on_batch(x)) - ref).max() < 1e-4 * np.abs(ref).max()
    perturbed = np.asarray(widen_unet(narrow, narrow_cfg, wide_cfg).predict_on_batch(x))
    assert 0 < np.abs(perturbed - ref).max() < 0.1 * np.abs(ref).max()
    with pytest.raises(ValueError):
        widen_unet(narrow, narrow_cfg, UNetConfig(filters=(8, 12, 16), norm_layer="none"))


def test_deepened_network_computes_what_the_shallow_one_did():
    import keras
    from deepemhancer.network import UNetConfig, build_unet
    from deepemhancer.training.widen import deepen_unet
    keras.utils.set_random_seed(5)
    shallow_cfg = UNetConfig(filters=(4, 8), convs_per_block=2, norm_layer="none")
    deep_cfg = UNetConfig(filters=(4, 8), convs_per_block=3, norm_layer="none")
    shallow = build_unet(shallow_cfg)
    for layer in shallow.layers:                             # non-trivial PReLU slopes (negative values pass on)
        layer.set_weights([w + np.random.default_rng(3).normal(0, 0.1, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    deep = deepen_unet(shallow, shallow_cfg, deep_cfg)
    assert len(deep.layers) > len(shallow.layers) and deep.count_params() > shallow.count_params()
    x = np.random.default_rng(4).normal(size=(2, 16, 16, 16, 1)).astype(np.float32)
    ref = np.asarray(shallow.predict_on_batch(x))
    assert np.abs(np.asarray(deep.predict_on_batch(x)) - ref).max() < 1e-5 * np.abs(ref).max()
    with pytest.raises(ValueError):
        deepen_unet(shallow, shallow_cfg, UNetConfig(filters=(4, 12), convs_per_block=3, norm_layer="none"))


def test_export_saves_a_running_campaign_checkpoint_as_a_model(prepared, tmp_path):
    from deepemhancer.models import find_model, load_model
    from deepemhancer.training.cli import main
    run = tmp_path / "run"
    assert main(["fit", "--pairs", str(prepared), "-o", str(run), "--filters", "4,8", "--cube", "16", "--batch", "2",
                 "--steps-per-epoch", "1", "--val-cubes", "2", "--epochs", "1", "--quiet"]) == 0
    assert json.loads((run / "pairs.json").read_text())
    assert main(["export", "--run", str(run), "-o", str(tmp_path / "now")]) == 0
    loaded = load_model(find_model("tightTarget", str(tmp_path / "now")))
    assert "epoch 1" in loaded.metadata.training["exported"]
    assert loaded.metadata.selfcheck["probes"]                      # the self-check's reference is stored
    assert main(["export", "--run", str(run), "--which", "last", "-o", str(tmp_path / "last")]) == 0
    last = load_model(find_model("tightTarget", str(tmp_path / "last")))
    assert "last checkpoint, epoch 1" in last.metadata.training["exported"]
    assert main(["export", "--run", str(tmp_path / "nothing"), "-o", str(tmp_path / "x")]) == 2
