"""Stage 1/7: MRC reading and writing keep the grid (shape, voxel size, origin, axis order) exactly."""

import os

import mrcfile
import numpy as np
import pytest

from deepemhancer.errors import InputError
from deepemhancer.io import MapGrid, read_map, write_map
from conftest import data_path


def test_emd3488_grid():
    data, grid = read_map(data_path("emd_3488.mrc"))
    assert data.shape == (100, 100, 100) and data.dtype == np.float32
    assert grid.voxel_size == pytest.approx((1.05, 1.05, 1.05))
    assert grid.origin == (0.0, 0.0, 0.0)


def test_header_origin_and_nstart_conventions_agree():
    seg, g_origin = read_map(data_path("emd_21457_seg.mrc"))
    seg_n, g_nstart = read_map(data_path("emd_21457_seg_nstart.mrc"))
    seg_0, g_zero = read_map(data_path("emd_21457_seg_orig0.mrc"))
    assert g_origin.origin == pytest.approx((162.75, 231.0, 204.75))
    assert g_nstart.origin == pytest.approx((162.75, 231.0, 204.75))
    assert g_zero.origin == (0.0, 0.0, 0.0)
    assert seg.shape == (47, 40, 48)
    np.testing.assert_array_equal(seg, seg_n)
    np.testing.assert_array_equal(seg, seg_0)


def test_negative_nstart():
    _, grid = read_map(data_path("EMD-3197.map"))
    assert grid.shape == (20, 20, 20)
    assert grid.origin == pytest.approx((-2 * 11.4, 0.0, 0.0))


def test_permuted_axes_are_returned_in_zyx_order():
    path = data_path("EMD-3001.map")
    data, grid = read_map(path)
    with mrcfile.open(path, permissive=True) as mrc:
        raw = np.asarray(mrc.data)  # (sections, rows, columns) = (y, x, z) for mapc/mapr/maps = 3,1,2
        assert (int(mrc.header.mapc), int(mrc.header.mapr), int(mrc.header.maps)) == (3, 1, 2)
    assert raw.shape == (25, 43, 73)
    assert data.shape == (73, 25, 43)           # (z, y, x)
    assert data[5, 7, 11] == raw[7, 11, 5]      # z=5 is column 5, y=7 section 7, x=11 row 11
    assert grid.voxel_size == pytest.approx((0.448, 0.393, 0.459), abs=2e-3)
    # nstart (0, -21, -12) counts columns/rows/sections: columns run along z, rows along x, sections along y
    assert grid.origin == pytest.approx((-21 * grid.voxel_size[0], -12 * grid.voxel_size[1], 0.0))
    assert not grid.is_orthogonal and not grid.is_isotropic


@pytest.mark.parametrize("shape,origin", [((17, 30, 23), (12.5, -40.0, 3.25)), ((9, 9, 40), (0.0, 0.0, 0.0))])
def test_write_read_round_trip_non_cubic(tmp_path, shape, origin):
    rng = np.random.default_rng(0)
    data = rng.standard_normal(shape).astype(np.float32)
    grid = MapGrid(shape=shape, voxel_size=(0.83, 0.83, 0.83), origin=origin)
    out = write_map(tmp_path / "a.mrc", data, grid)
    back, grid_back = read_map(out)
    np.testing.assert_array_equal(back, data)
    assert grid_back.shape == grid.shape
    assert grid_back.voxel_size == pytest.approx(grid.voxel_size, rel=1e-6)
    assert grid_back.origin == pytest.approx(grid.origin, abs=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mrc"]  # no temporary file left behind


def test_round_trip_of_real_headers_keeps_placement(tmp_path):
    for name in ("emd_21457_seg_nstart.mrc", "EMD-3197.map", "emd_3488.mrc"):
        data, grid = read_map(data_path(name))
        out = write_map(tmp_path / f"rt_{name}.mrc", data, grid)
        back, grid_back = read_map(out)
        np.testing.assert_array_equal(back, data)
        assert grid_back.origin == pytest.approx(grid.origin, abs=1e-3)


def test_write_refuses_existing_and_inputs(tmp_path, tmp_data):
    src = tmp_data("emd_3488.mrc")
    data, grid = read_map(src)
    before = open(src, "rb").read()
    with pytest.raises(InputError, match="already exists"):
        write_map(src, data, grid)
    with pytest.raises(InputError, match="one of the inputs"):
        write_map(src, data, grid, overwrite=True, inputs=(src,))
    assert open(src, "rb").read() == before
    out = tmp_path / "out.mrc"
    write_map(out, data, grid)
    write_map(out, data * 2, grid, overwrite=True)
    assert read_map(out)[0].max() == pytest.approx(2 * data.max())
    with pytest.raises(InputError, match=".mrc or .map"):
        write_map(tmp_path / "out.txt", data, grid)


def _write_raw(path, data):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 1.0


@pytest.mark.parametrize("bad,match", [
    ("nan", "NaN or infinite"), ("constant", "constant"), ("truncated", "not a complete MRC map|cannot be read"),
    ("text", "not a complete MRC map|cannot be read"), ("missing", "no such file"), ("image2d", "not a 3D"),
])
def test_bad_inputs_raise_clear_errors(tmp_path, bad, match):
    path = str(tmp_path / "bad.mrc")
    if bad == "nan":
        d = np.ones((8, 8, 8), np.float32)
        d[1, 2, 3] = np.nan
        _write_raw(path, d)
    elif bad == "constant":
        _write_raw(path, np.full((8, 8, 8), 3.0, np.float32))
    elif bad == "truncated":
        _write_raw(path, np.random.rand(32, 32, 32).astype(np.float32))
        with open(path, "r+b") as f:
            f.truncate(1024 + 1000)
    elif bad == "text":
        with open(path, "w") as f:
            f.write("not a map\n" * 200)
    elif bad == "image2d":
        _write_raw(path, np.random.rand(1, 16, 16).astype(np.float32)[0])
    with pytest.raises(InputError, match=match):
        read_map(path)
    if bad != "missing":
        assert os.path.exists(path)
