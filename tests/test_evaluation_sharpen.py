"""Global automatic B-factor sharpening recovers a known B and low-passes at the resolution."""

import numpy as np
import pytest

from deepemhancer.evaluation import fsc as F
from deepemhancer.evaluation.sharpen import apply_bfactor, auto_sharpen, guinier_bfactor, lowpass


@pytest.mark.parametrize("bfactor", [40.0, 120.0])
def test_guinier_fit_recovers_a_known_bfactor(bfactor):
    # white "structure" (flat Wilson plot) damped by a known B on a non-cubic box
    x = np.random.default_rng(0).standard_normal((56, 64, 60)).astype(np.float32)
    blurred = apply_bfactor(x, 1.0, bfactor)
    fit = guinier_bfactor(blurred, 1.0, high_res=3.0, low_res=10.0)
    assert fit.bfactor == pytest.approx(bfactor, abs=5.0)
    assert fit.n_shells > 10


def test_auto_sharpen_flattens_the_falloff_and_cuts_beyond_the_resolution():
    x = np.random.default_rng(1).standard_normal((48, 48, 48)).astype(np.float32)
    blurred = apply_bfactor(x, 1.2, 100.0)
    res = auto_sharpen(blurred, 1.2, resolution=4.0)
    assert res.fit.bfactor == pytest.approx(100.0, abs=6.0)
    freq, amp = F.shell_average(res.data, 1.2)
    _, amp0 = F.shell_average(x, 1.2)
    band = (freq > 1 / 10.0) & (freq < 1 / 4.5)
    assert np.allclose(amp[band] / amp0[band], 1.0, atol=0.15)   # the original flat spectrum is back
    assert amp[freq > 1 / 4.0 + 3 / 57.6].max() < 1e-4 * amp[band].max()   # nothing past the soft edge
    assert F.pearson_cc(res.data, lowpass(x, 1.2, 4.0)) > 0.97


def test_guinier_fit_needs_enough_shells():
    x = np.random.default_rng(2).standard_normal((16, 16, 16))
    with pytest.raises(ValueError, match="too few"):
        guinier_bfactor(x, 1.0, high_res=8.0)
