"""The deepemhancer command: end to end on real maps, and a clear exit code 2 for every bad input."""

import hashlib
import os
import re
import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from deepemhancer.cli import main
from deepemhancer.io import MapGrid, read_map, write_map
from conftest import data_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_command_end_to_end_on_emd3488(tmp_path, small_models_dir):
    """The real command in a subprocess, as a user runs it."""
    out = tmp_path / "post.mrc"
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "deepemhancer", "-i", data_path("emd_3488.mrc"), "-o", str(out),
                           "--deepLearningModelPath", small_models_dir, "-g", "-1", "-b", "4"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "cube" in proc.stderr and "wrote" in proc.stderr  # progress bar and summary on stderr
    data_in, grid_in = read_map(data_path("emd_3488.mrc"))
    data_out, grid_out = read_map(out)
    assert grid_out.shape == grid_in.shape == (100, 100, 100)
    assert grid_out.voxel_size == pytest.approx(grid_in.voxel_size)
    assert grid_out.origin == pytest.approx(grid_in.origin)
    assert np.all(np.isfinite(data_out)) and data_out.std() > 0
    with mrcfile.open(out) as mrc:
        assert mrc.data.dtype == np.float32
        assert (int(mrc.header.mapc), int(mrc.header.mapr), int(mrc.header.maps)) == (1, 2, 3)


@pytest.mark.parametrize("tiling", ["fast", "original"])
def test_half_maps_on_a_placed_non_cubic_map_keep_the_grid(tmp_path, small_models_dir, tiling):
    data, grid = read_map(data_path("emd_21457_seg.mrc"))  # 48 x 40 x 47 at 1.05 A, origin (162.75, 231, 204.75)
    rng = np.random.default_rng(0)
    h1 = write_map(tmp_path / "h1.mrc", data + 0.2 * rng.standard_normal(data.shape), grid)
    h2 = write_map(tmp_path / "h2.mrc", data + 0.2 * rng.standard_normal(data.shape), grid)
    out = str(tmp_path / "out.map")
    assert main(["-i", h1, "-i2", h2, "-o", out, "--deepLearningModelPath", small_models_dir, "--tiling", tiling,
                 "--quiet"]) == 0
    result, grid_out = read_map(out)
    assert grid_out.shape == grid.shape and grid_out.origin == pytest.approx(grid.origin)
    assert grid_out.voxel_size == pytest.approx(grid.voxel_size) and np.all(np.isfinite(result))


def test_half_maps_better_than_3_a_get_the_advice_to_try_highres(tmp_path, small_models_dir, capsys):
    """The default tightTarget on 2.9 A halves prints the highRes advice; wideTarget, 3.5 A or 7 A halves do not."""
    data, grid = read_map(data_path("emd_21457_seg.mrc"))
    rng = np.random.default_rng(1)

    def run(noise, extra):
        names = [str(tmp_path / f"{noise}_{len(extra)}_half{k}.mrc") for k in (1, 2)]
        for name in names:
            write_map(name, data + noise * data.std() * rng.standard_normal(data.shape), grid)
        out = str(tmp_path / f"{noise}_{len(extra)}_out.mrc")
        assert main(["-i", names[0], "-i2", names[1], "-o", out, "--deepLearningModelPath", small_models_dir,
                     "--quiet", "--overwrite", *extra]) == 0
        return capsys.readouterr().err

    advice = [line for line in run(1.0, []).splitlines() if "try -p highRes" in line]
    assert len(advice) == 1, advice
    assert 2.0 < float(re.search(r"the half maps reach ([0-9.]+) A", advice[0]).group(1)) < 3.0
    assert "highRes" not in run(1.0, ["-p", "wideTarget"])
    assert "highRes" not in run(2.0, [])
    assert "highRes" not in run(8.0, [])


def test_mask_mode_noise_stats_cleaning_and_overwrite(tmp_path, small_models_dir):
    data, grid = read_map(data_path("emd_3488.mrc"))
    mask = write_map(tmp_path / "mask.mrc", (data > 0.05).astype(np.float32), grid)
    out = str(tmp_path / "out.mrc")
    common = ["-i", data_path("emd_3488.mrc"), "-o", out, "--deepLearningModelPath", small_models_dir, "--quiet"]
    assert main(common + ["-m", mask]) == 0
    assert main(common + ["--noiseStats", "0.0", "0.01", "--cleaningStrengh", "0.1", "--overwrite"]) == 0
    assert main(common + ["-s", "1.2", "--overwrite"]) == 0
    assert read_map(out)[1].voxel_size == pytest.approx((1.2, 1.2, 1.2))


def test_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert "0.17" in capsys.readouterr().out
    assert main(["-h"]) == 0
    text = capsys.readouterr().out
    for flag in ("-i", "-i2", "-o", "-p", "-s", "--noiseStats", "-m", "--deepLearningModelPath", "--cleaningStrengh",
                 "-g", "-b", "--download", "--version", "--tiling", "--overwrite", "--quiet"):
        assert flag in text


def _bad_inputs(tmp_path, models):
    """(name, argv, expected message) for every bad input we guard against."""
    emd = str(tmp_path / "emd.mrc")
    data, grid = read_map(data_path("emd_3488.mrc"))
    write_map(emd, data, grid)
    small = write_map(tmp_path / "small.mrc", data[:90, :90, :90], MapGrid((90, 90, 90), grid.voxel_size))
    other_voxel = write_map(tmp_path / "vox.mrc", data, MapGrid(grid.shape, (1.3, 1.3, 1.3)))
    nan = str(tmp_path / "nan.mrc")
    bad = data.copy()
    bad[50, 50, 50] = np.nan
    with mrcfile.new(nan) as mrc:
        mrc.set_data(bad)
    const = write_map(tmp_path / "const.mrc", np.ones((40, 40, 40), np.float32), MapGrid((40, 40, 40), (1, 1, 1)))
    if os.path.exists(const):
        with mrcfile.open(const, "r+") as mrc:
            mrc.data[:] = 1.0
    trunc = str(tmp_path / "trunc.mrc")
    with open(emd, "rb") as f, open(trunc, "wb") as g:
        g.write(f.read(100_000))
    text = str(tmp_path / "notes.mrc")
    open(text, "w").write("hello\n" * 500)
    sphere = (np.sum((np.indices((50, 50, 50)) - 25) ** 2, axis=0) < 15 ** 2).astype(np.float32)
    mask_small = write_map(tmp_path / "mask.mrc", sphere, MapGrid((50, 50, 50), (1, 1, 1)))
    no_solvent = np.zeros((60, 60, 60), np.float32)
    no_solvent[15:45, 15:45, 15:45] = 1.0
    masked_map = write_map(tmp_path / "nosolvent.mrc", no_solvent, MapGrid((60, 60, 60), (1, 1, 1)))
    existing = write_map(tmp_path / "exists.mrc", data, grid)
    empty_models = tmp_path / "empty_models"
    empty_models.mkdir()
    out = str(tmp_path / "out.mrc")
    m = ["--deepLearningModelPath", models]
    return [
        ("no input", ["-o", out], "inputMap is required"),
        ("no output", ["-i", emd], "outputMap is required"),
        ("input missing", ["-i", str(tmp_path / "nope.mrc"), "-o", out] + m, "no such file"),
        ("output exists", ["-i", emd, "-o", existing] + m, "already exists"),
        ("output is the input", ["-i", emd, "-o", emd, "--overwrite"] + m, "one of the inputs"),
        ("output extension", ["-i", emd, "-o", str(tmp_path / "out.txt")] + m, ".mrc or .map"),
        ("output folder missing", ["-i", emd, "-o", str(tmp_path / "no" / "out.mrc")] + m, "does not exist"),
        ("half maps of different shapes", ["-i", emd, "-i2", small, "-o", out] + m, "different shapes"),
        ("half maps of different voxels", ["-i", emd, "-i2", other_voxel, "-o", out] + m, "different voxel sizes"),
        ("NaN in map", ["-i", nan, "-o", out] + m, "NaN or infinite"),
        ("constant map", ["-i", const, "-o", out] + m, "constant"),
        ("truncated file", ["-i", trunc, "-o", out] + m, "not a complete MRC map|cannot be read"),
        ("not an MRC file", ["-i", text, "-o", out] + m, "not a complete MRC map|cannot be read"),
        ("noise SD not positive", ["-i", emd, "-o", out, "--noiseStats", "0", "0"] + m, "must be positive"),
        ("mask and noise stats", ["-i", emd, "-o", out, "-m", mask_small, "--noiseStats", "0", "1"] + m, "exclusive"),
        ("mask with -p", ["-i", emd, "-o", out, "-m", mask_small, "-p", "highRes"] + m, "-p cannot"),
        ("mask of wrong size", ["-i", emd, "-o", out, "-m", mask_small] + m, "must be on the map's grid"),
        ("cleaning >= 1", ["-i", emd, "-o", out, "--cleaningStrengh", "1.5"] + m, "must be < 1"),
        ("batch size 0", ["-i", emd, "-o", out, "-b", "0"] + m, "at least 1"),
        ("negative sampling", ["-i", emd, "-o", out, "-s", "-1"] + m, "must be positive"),
        ("unknown model type", ["-i", emd, "-o", out, "-p", "superRes"] + m, "invalid choice"),
        ("unknown tiling", ["-i", emd, "-o", out, "--tiling", "magic"] + m, "invalid choice"),
        ("bad GPU list", ["-i", emd, "-o", out, "-g", "first"] + m, "gpuIds"),
        ("no model installed", ["-i", emd, "-o", out, "--deepLearningModelPath", str(empty_models)], "installb"),
        ("model path missing", ["-i", emd, "-o", out, "--deepLearningModelPath", str(tmp_path / "x")], "no such"),
        ("map too small for voxel size", ["-i", emd, "-o", out, "-s", "0.05"] + m, "too small"),
        ("non-orthogonal cell", ["-i", data_path("EMD-3001.map"), "-o", out] + m, "non-orthogonal"),
        ("masked map without solvent", ["-i", masked_map, "-o", out] + m, "noiseStats"),
    ]


def test_bad_inputs_exit_2_with_a_clear_message_and_leave_inputs_untouched(tmp_path, small_models_dir, capsys):
    cases = _bad_inputs(tmp_path, small_models_dir)
    assert len(cases) >= 15
    files = {p: _digest(p) for p in map(str, tmp_path.rglob("*")) if os.path.isfile(p)}
    rows = []
    for name, argv, expected in cases:
        code = main(argv)
        err = capsys.readouterr().err
        rows.append((name, code, err.strip().splitlines()[-1] if err.strip() else ""))
        assert code == 2, (name, err)
        assert any(e in err for e in expected.split("|")), (name, err)
        assert not os.path.exists(tmp_path / "out.mrc"), name
    assert {p: _digest(p) for p in files} == files  # every input left untouched
    with open(tmp_path / "bad_inputs_table.md", "w") as f:
        for name, code, message in rows:
            f.write(f"| {name} | {code} | {message} |\n")
    print(open(tmp_path / "bad_inputs_table.md").read())
