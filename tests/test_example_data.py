"""The bundled example (deepemhancer_plugin/example) looks like a real half-map pair, not a toy."""

import os

import numpy as np
import pytest

from deepemhancer.evaluation.modelmap import fraction_inside
from deepemhancer.io import read_map
from deepemhancer.training.simulate import fsc, fsc_resolution

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "deepemhancer_plugin", "example")


@pytest.fixture(scope="module")
def pair():
    h1, grid = read_map(os.path.join(EXAMPLE, "emd0093_half1.mrc"))
    h2, grid2 = read_map(os.path.join(EXAMPLE, "emd0093_half2.mrc"))
    assert grid == grid2
    return h1.astype(np.float64), h2.astype(np.float64), grid


def test_native_sampling_box_and_origin(pair):
    h1, _, grid = pair
    assert min(h1.shape) >= 96 and grid.voxel_size[0] <= 1.4
    assert grid.origin != (0.0, 0.0, 0.0)                                # the crop keeps its place in the map
    assert fraction_inside(os.path.join(EXAMPLE, "6gyn.pdb.gz"), grid) == 1.0


def test_half_map_fsc_falls_like_a_real_pair(pair):
    h1, h2, grid = pair
    freq, curve = fsc(h1, h2, grid.voxel_size[0])
    crossing = fsc_resolution(freq, curve)
    nyquist = 2 * grid.voxel_size[0]
    assert nyquist + 0.5 < crossing < 4.5                                # below 0.143 well before Nyquist
    beyond = curve[freq > 1.1 / crossing]
    assert np.abs(beyond).max() < 0.1                                    # and it stays down (no rise to Nyquist)
    before = curve[1:np.searchsorted(freq, 1 / crossing)]
    rises = np.diff(before)[np.diff(before) > 0]
    assert rises.sum() < 0.15                                            # monotone-ish on the way down
    assert curve[1] > 0.95


def test_noise_fills_the_whole_box_and_the_fall_off_is_unsharpened(pair):
    h1, h2, grid = pair
    assert np.mean(h1 == 0) < 0.001                                      # no depositor's mask left
    diff = h1 - h2
    corner = diff[:16, :16, :16]
    assert corner.std() > 0.5 * diff.std()                               # independent noise in the solvent too
    average = 0.5 * (h1 + h2)
    from deepemhancer.evaluation.sharpen import guinier_bfactor
    fit = guinier_bfactor(average, grid.voxel_size, high_res=4.5)
    assert fit.bfactor > 50                                              # an unsharpened average, not a post-processed map


def test_output_of_a_map_whose_voxel_is_not_1A_has_no_solvent_ringing(tmp_path):
    """The example is at 1.34 A/voxel: the network's 1 A output is Fourier-resampled back onto that grid. Far from
    the molecule the output must stay flat, well below any contour a user would choose."""
    from scipy import ndimage
    from deepemhancer.api import enhance_file
    from deepemhancer.evaluation.retention import atom_voxel_indices
    out = tmp_path / "out.mrc"
    enhance_file(os.path.join(EXAMPLE, "emd0093_half1.mrc"), str(out),
                 half2=os.path.join(EXAMPLE, "emd0093_half2.mrc"))
    data, grid = read_map(out)
    atoms = atom_voxel_indices(os.path.join(EXAMPLE, "6gyn.pdb.gz"), grid)
    occupied = np.zeros(data.shape, bool)
    occupied[tuple(atoms.T)] = True
    far = ndimage.distance_transform_edt(~occupied, sampling=grid.voxel_size[0]) > 12.0
    peak = float(np.percentile(data, 99.99))
    assert np.abs(data[far]).max() < 0.01 * peak            # measured 0.5 % with the shipped tightTarget
    assert np.sqrt(np.mean(data[far] ** 2)) < 0.002 * peak   # measured 0.05 %
