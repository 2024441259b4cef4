"""Stage 6: removal of small disconnected blobs."""

import numpy as np
import pytest

from deepemhancer.clean import otsu_threshold, remove_small_components
from deepemhancer.errors import InputError


def test_small_blob_removed_big_blob_kept():
    rng = np.random.default_rng(0)
    x = (0.01 * rng.standard_normal((64, 64, 64))).astype(np.float32)
    x[10:40, 10:40, 10:40] += 1.0     # 27000 voxels
    x[50:54, 50:54, 50:54] += 1.0     # 64 voxels: 0.2 % of the foreground
    out = remove_small_components(x, 0.05)
    assert out[52, 52, 52] < 0.1
    np.testing.assert_array_equal(out[10:40, 10:40, 10:40], x[10:40, 10:40, 10:40])
    assert remove_small_components(x, 0.001)[52, 52, 52] > 0.9  # kept at a lower strength


def test_otsu_separates_two_populations():
    values = np.concatenate([np.zeros(1000), np.ones(300)])
    assert 0 < otsu_threshold(values) < 1


@pytest.mark.parametrize("strength", [0.0, 1.0, 1.5, -0.2])
def test_strength_must_be_a_fraction(strength):
    with pytest.raises(InputError, match="between 0 and 1"):
        remove_small_components(np.zeros((8, 8, 8), np.float32), strength)
