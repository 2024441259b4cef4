"""deepemhancer-eval end to end on real data: table printed, PNG + HTML report written headless."""

import json
import os

import numpy as np
import pytest

from deepemhancer.evaluation.cli import main
from deepemhancer.evaluation.sharpen import apply_bfactor
from deepemhancer.io import MapGrid, read_map, write_map

DATA = os.path.join(os.path.dirname(__file__), "data")
MAP = os.path.join(DATA, "eval_emd3488_sub.mrc")
MODEL = os.path.join(DATA, "eval_5me2_sub.pdb.gz")


@pytest.fixture()
def halves(tmp_path):
    data, grid = read_map(MAP)
    rng = np.random.default_rng(3)
    blurred = apply_bfactor(data, grid.voxel_size, 100.0)
    paths = []
    for i in (1, 2):
        p = tmp_path / f"half{i}.mrc"
        write_map(p, blurred + rng.normal(0, 0.7 * float(blurred.std()), data.shape).astype(np.float32), grid)
        paths.append(str(p))
    return paths


def test_eval_command_writes_the_report_and_prints_the_table(tmp_path, halves, capsys):
    out = tmp_path / "eval"
    rc = main(["-i", MAP, "--label", "deposited", "--half1", halves[0], "--half2", halves[1], "--model", MODEL,
               "--no-relion", "-o", str(out), "--title", "EMD-3488 sub-box"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| map | FSC0.5 (A) |" in printed
    for row in ("| input |", "| auto-B |", "| deposited |"):
        assert row in printed
    png, page = out / "report.png", out / "report.html"
    assert png.exists() and png.stat().st_size > 50_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert 'src="report.png"' in html and "<table>" in html and "deposited" in html
    scores = json.loads((out / "scores.json").read_text())
    rows = {r["map"]: r for r in scores["maps"]}
    # the deposited (sharp, unblurred) map agrees with its model better than the blurred noisy input
    assert rows["deposited"]["FSC0.5"] < rows["input"]["FSC0.5"]
    assert rows["deposited"]["CC env"] > rows["input"]["CC env"]
    assert scores["resolution_source"] == "half-map FSC 0.143"
    _, grid = read_map(out / "autoB_sharpened.mrc")
    assert grid.origin == pytest.approx(read_map(MAP)[1].origin, abs=1e-3)  # baselines stay on the input grid
    assert (out / "local_cc.mrc").exists()


def test_eval_command_without_reference_still_reports_half_map_fsc(tmp_path, halves, capsys):
    rc = main(["--half1", halves[0], "--half2", halves[1], "--no-relion", "--no-maps", "-o", str(tmp_path / "e")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "half-map FSC: 0.5 at" in printed and "no --model or --reference" in printed
    assert (tmp_path / "e" / "report.png").stat().st_size > 10_000


def test_eval_command_rejects_maps_on_different_grids(tmp_path, capsys):
    data, grid = read_map(MAP)
    other = tmp_path / "other.mrc"
    write_map(other, data[:40], MapGrid((40,) + tuple(grid.shape[1:]), grid.voxel_size, grid.origin))
    assert main(["-i", MAP, "--input", str(other), "-o", str(tmp_path / "e")]) == 2
    assert "same grid" in capsys.readouterr().err
    assert main(["-o", str(tmp_path / "e")]) == 2
    assert main(["-i", MAP, "--half1", MAP]) == 2


def test_eval_command_with_a_reference_map_and_a_user_mask(tmp_path, halves, capsys):
    data, grid = read_map(MAP)
    mask = tmp_path / "mask.mrc"
    from deepemhancer.evaluation.fsc import threshold_mask
    write_map(mask, threshold_mask(data, 0.1, grid.voxel_size), grid)
    rc = main(["-i", halves[0], "--label", "half1", "--reference", MAP, "-m", str(mask), "--resolution", "3.2",
               "--no-relion", "--no-maps", "-o", str(tmp_path / "e")])
    assert rc == 0
    scores = json.loads((tmp_path / "e" / "scores.json").read_text())
    assert scores["reference"] == "map" and scores["mask"] == "user mask"
    assert scores["resolution_source"] == "given"
    rows = {r["map"]: r for r in scores["maps"]}
    assert set(rows) == {"half1"}  # no input map or half pair: only the processed column
    assert 3.0 < rows["half1"]["FSC0.5 env"] < 8.0
    assert "auto-B column unavailable" in capsys.readouterr().out


# ------------------------------------------------------------------ retention (issue 15)
def _two_blobs(n=64, weak=0.25):
    z, y, x = np.mgrid[:n, :n, :n]
    strong = np.exp(-((x - 20) ** 2 + (y - 32) ** 2 + (z - 32) ** 2) / (2 * 4.0 ** 2))
    faint = weak * np.exp(-((x - 46) ** 2 + (y - 32) ** 2 + (z - 32) ** 2) / (2 * 4.0 ** 2))
    return strong, faint


def test_retention_is_full_for_the_input_and_drops_when_weak_density_is_erased():
    from deepemhancer.evaluation.retention import retention
    strong, faint = _two_blobs()
    noisy = strong + faint + np.random.default_rng(0).normal(0, 0.02, strong.shape)
    same = retention(noisy, noisy, 1.0)
    assert same.retention == 1.0
    erased = retention(noisy, strong, 1.0)            # the weak blob removed, the strong one kept
    assert erased.retention < 0.8
    sharpened = retention(noisy, 3.0 * (strong + faint) ** 1.0, 1.0)   # scale does not matter
    assert sharpened.retention > 0.9 and sharpened.outside < 0.05   # only the noisy boundary differs
    invented = retention(noisy, strong + faint + np.roll(strong, 20, axis=0), 1.0)
    assert invented.outside > 0.2                     # density where the input had none
    # a constant is not density: the outside fraction is counted from the map's level far from the input's density,
    # so neither a positive background nor a negative one that would clip an invented blob's halo away changes it
    for shift in (-0.01, 0.01):
        assert retention(noisy, strong + faint + shift, 1.0).outside == pytest.approx(sharpened.outside, abs=0.01)
        assert retention(noisy, strong + faint + np.roll(strong, 20, axis=0) + shift, 1.0).outside > 0.2
    haze = strong + faint + 0.01 * np.random.default_rng(1).normal(0, 1, strong.shape) - 0.02
    assert retention(noisy, haze, 1.0).outside > retention(noisy, strong + faint - 0.02, 1.0).outside


def test_atoms_inside_counts_atoms_of_an_erased_region():
    from deepemhancer.evaluation.retention import atoms_inside
    strong, faint = _two_blobs(weak=1.0)
    atoms = np.array([[32, 32, x] for x in (18, 20, 22, 44, 46, 48)])
    assert atoms_inside(strong + faint, atoms, 1.0) == 1.0
    assert atoms_inside(strong, atoms, 1.0) == pytest.approx(0.5)


# ------------------------------------------------------------------ second, independent simulator (issue 15)
def test_validation_simulator_is_never_used_by_training():
    import deepemhancer.training as training
    folder = os.path.dirname(training.__file__)
    for name in os.listdir(folder):
        if name.endswith(".py"):
            with open(os.path.join(folder, name)) as f:
                assert "validation_simulator" not in f.read(), name


def test_validation_simulator_makes_a_pair_at_the_asked_resolution():
    from deepemhancer.evaluation import validation_simulator as vs
    pair = vs.simulate(os.path.join(os.path.dirname(__file__), "data", "training_1ubi.pdb.gz"), seed=5,
                       resolution=4.0)
    assert pair.half1.shape == pair.half2.shape == pair.truth.shape == pair.envelope.shape
    distance_mask = np.clip((pair.envelope > 0).astype(float), 0, 1)
    freq, curve = vs._fsc_in_mask(pair.half1, pair.half2, distance_mask, pair.voxel_size)
    assert 3.0 < vs._crossing(freq, curve) < 5.5
    assert not np.allclose(pair.half1, pair.half2)
    assert pair.recipe["flexible_atoms"] > 0 and 0.8 <= pair.voxel_size <= 1.4
