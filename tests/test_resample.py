"""Stage 3: resampling to the working voxel size and back keeps values, positions and the grid."""

import numpy as np
import pytest

from deepemhancer.resample import resample_to_shape, shape_for_voxel_size, to_voxel_size


@pytest.mark.parametrize("shape,up", [((30, 41, 52), (45, 61, 77)), ((31, 32, 33), (32, 33, 34)),
                                      ((20, 20, 20), (37, 37, 37))])
def test_up_then_down_is_exact(shape, up):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    back = resample_to_shape(resample_to_shape(x, up), shape)
    np.testing.assert_allclose(back, x, atol=2e-5)


def test_constant_and_mean_are_kept():
    c = resample_to_shape(np.full((10, 11, 12), 2.5, np.float32), (17, 5, 9))
    np.testing.assert_allclose(c, 2.5, rtol=1e-5)


def test_shape_rule_is_the_originals():
    assert shape_for_voxel_size((100, 100, 100), 1.05, 1.0) == (105, 105, 105)
    assert shape_for_voxel_size((112, 104, 94), (0.65, 0.65, 0.65), 1.0) == (73, 68, 61)
    assert shape_for_voxel_size((10, 20, 30), (2.0, 1.0, 0.5), 1.0) == (20, 20, 15)


def _blob(shape, voxel, centre_angstrom, sigma_angstrom=4.0):
    axes = [np.arange(n) * voxel for n in shape]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    cz, cy, cx = centre_angstrom
    return np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma_angstrom ** 2)).astype(np.float32)


def _centroid_angstrom(data, voxel):
    idx = np.indices(data.shape).reshape(3, -1)
    w = np.clip(data, 0, None).ravel()
    return (idx @ w / w.sum()) * voxel


@pytest.mark.parametrize("voxel_in", [0.65, 1.05, 1.7])
def test_positions_in_angstrom_are_kept(voxel_in):
    shape = tuple(int(round(n / voxel_in)) for n in (60, 52, 70))
    centre = (27.3, 31.1, 36.4)
    blob = _blob(shape, voxel_in, centre)
    at_1a = to_voxel_size(blob, voxel_in, 1.0)
    effective = np.array(shape) * voxel_in / np.array(at_1a.shape)
    np.testing.assert_allclose(_centroid_angstrom(at_1a, effective), centre, atol=0.05)
    back = resample_to_shape(at_1a, shape)
    np.testing.assert_allclose(_centroid_angstrom(back, voxel_in), centre, atol=0.05)
    assert np.corrcoef(back.ravel(), blob.ravel())[0, 1] > 0.999


def test_downsampling_removes_frequencies_beyond_new_nyquist():
    n = 64
    i = np.arange(n)
    checker = ((-1.0) ** (i[:, None, None] + i[None, :, None] + i[None, None, :])).astype(np.float32)
    low = _blob((n, n, n), 1.0, (32, 32, 32), 6.0)
    down = resample_to_shape(checker + low, (40, 40, 40))
    expected = resample_to_shape(low, (40, 40, 40))
    np.testing.assert_allclose(down, expected, atol=1e-4)  # no aliasing of the checkerboard
