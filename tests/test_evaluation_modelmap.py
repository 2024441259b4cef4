"""Model maps land on the real maps: EMD-3488 (nstart convention) and EMD-20026 (header-origin convention)."""

import os

import numpy as np
import pytest

from deepemhancer.errors import InputError
from deepemhancer.evaluation import fsc as F
from deepemhancer.evaluation.modelmap import fraction_inside, model_map, read_model
from deepemhancer.evaluation.sharpen import lowpass
from deepemhancer.io import MapGrid, read_map

DATA = os.path.join(os.path.dirname(__file__), "data")
# (map, model, reported resolution): sub-boxes of the deposited maps with their fitted models
CASES = {
    "emd3488_nstart": ("eval_emd3488_sub.mrc", "eval_5me2_sub.pdb.gz", 3.2),
    "emd20026_header_origin": ("eval_emd20026_sub.mrc", "eval_3ajo_sub.pdb.gz", 1.75),
}


def _cc(data, model, grid, resolution):
    """The data README's CC: model map blurred with sigma = 0.225 d / 2, over the box and in its 5 % envelope."""
    blurred = F.gaussian_blur(model, 0.225 * resolution / 2, grid.voxel_size)
    return F.pearson_cc(data, blurred), F.pearson_cc(data, blurred, blurred > 0.05 * blurred.max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_map_sits_on_the_map_and_a_shift_destroys_the_agreement(case):
    map_name, model_name, resolution = CASES[case]
    data, grid = read_map(os.path.join(DATA, map_name))
    assert any(o > 20 for o in grid.origin)  # these sub-boxes do not start at 0: placement matters
    model = read_model(os.path.join(DATA, model_name))
    mm = model_map(model, grid)
    assert mm.shape == data.shape and mm.dtype == np.float32
    cc, cc_env = _cc(data, mm, grid, resolution)
    assert cc > 0.55 and cc_env > 0.55
    curve = F.fsc(data, mm, grid.voxel_size)
    assert F.resolution_at(curve, 0.5) < 1.3 * resolution  # near the reported resolution, far from random

    # the same map read with its origin dropped (or off by a few A) no longer agrees with the model
    for shift in (3.0, -5.0):
        moved = MapGrid(grid.shape, grid.voxel_size, tuple(o + shift for o in grid.origin))
        cc_moved, _ = _cc(data, model_map(model, moved), grid, resolution)
        assert cc_moved < 0.2, (shift, cc_moved)
    dropped = MapGrid(grid.shape, grid.voxel_size, (0.0, 0.0, 0.0))
    assert fraction_inside(model, dropped) < fraction_inside(model, grid)


def test_model_map_on_the_deposited_emd3488_reproduces_the_reference_fit():
    """The data README: FSC0.5 3.33 A, FSC0.143 3.04 A, CC 0.61 / 0.64 (envelope) for the full map."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data, grid = read_map(os.path.join(repo, "tests", "data", "emd_3488.mrc"))
    mm = model_map(os.path.join(repo, "deepemhancer_plugin", "tests", "data", "emd3488_5me2.pdb"), grid)
    curve = F.fsc(data, mm, grid.voxel_size)
    assert F.resolution_at(curve, 0.5) == pytest.approx(3.33, abs=0.2)
    assert F.resolution_at(curve, 0.143) == pytest.approx(3.04, abs=0.15)
    cc, cc_env = _cc(data, mm, grid, 3.2)
    assert cc == pytest.approx(0.61, abs=0.03) and cc_env == pytest.approx(0.64, abs=0.03)


def test_model_map_is_band_limited_and_exact_on_non_cubic_anisotropic_grids():
    model = read_model(os.path.join(DATA, "eval_3ajo_sub.pdb.gz"))
    data, grid = read_map(os.path.join(DATA, "eval_emd20026_sub.mrc"))
    coarse = MapGrid(shape=(20, 26, 30), voxel_size=(1.3, 1.2, 1.25), origin=grid.origin)
    mm = model_map(model, coarse, resolution=4.0)
    assert mm.shape == (20, 26, 30)
    # d_min = 4 A is the Nyquist-limited model map low-passed at 4 A (up to the crop of the padded cell)
    fine = model_map(model, coarse)
    assert F.pearson_cc(mm, lowpass(fine, coarse.voxel_size, 4.0, edge_shells=0.5)) > 0.95
    assert F.pearson_cc(mm, fine) < 0.99
    # the density peak lies where the atoms are: the centre of mass of the density matches the atoms'
    w = np.clip(mm, 0, None)
    k, j, i = np.indices(mm.shape)
    com = [coarse.origin[a] + (idx * w).sum() / w.sum() * coarse.voxel_size[a] for a, idx in enumerate((i, j, k))]
    box_hi = np.array(coarse.origin) + (np.array([30, 26, 20]) - 1) * np.array(coarse.voxel_size)
    xyz = np.array([[at.pos.x, at.pos.y, at.pos.z] for ch in model[0] for r in ch for at in r])
    inside = np.all((xyz >= coarse.origin) & (xyz <= box_hi), axis=1)
    assert np.allclose(com, xyz[inside].mean(axis=0), atol=1.5)


def test_read_model_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        read_model(tmp_path / "missing.pdb")
    bad = tmp_path / "bad.pdb"
    bad.write_text("HEADER nothing here\nEND\n")
    with pytest.raises(InputError):
        read_model(bad)
