"""The RELION 3.1 baseline (relion_mask_create + relion_postprocess) on a real, non-cubic sub-box."""

import os

import numpy as np
import pytest

from deepemhancer.evaluation import fsc as F
from deepemhancer.evaluation.compare import evaluate
from deepemhancer.evaluation.relion import relion_postprocess, relion_programs
from deepemhancer.evaluation.sharpen import apply_bfactor
from deepemhancer.io import read_map

DATA = os.path.join(os.path.dirname(__file__), "data")


def _halves():
    data, grid = read_map(os.path.join(DATA, "eval_emd20026_sub.mrc"))  # 56 x 52 x 48: not cubic
    rng = np.random.default_rng(0)
    blurred = apply_bfactor(data, grid.voxel_size, 60.0)
    sd = 0.5 * float(blurred.std())
    return [blurred + rng.normal(0, sd, data.shape).astype(np.float32) for _ in range(2)], grid


@pytest.mark.skipif(relion_programs() is None,
                    reason="RELION not installed: relion_mask_create / relion_postprocess not on PATH "
                           "(apt-get install relion)")
def test_relion_postprocess_runs_on_a_non_cubic_box_and_comes_back_on_its_grid(tmp_path):
    (h1, h2), grid = _halves()
    res = relion_postprocess(h1, h2, grid, workdir=str(tmp_path / "relion"))
    assert res.masked.shape == res.unmasked.shape == res.mask.shape == h1.shape
    assert 0.0 <= res.mask.min() and res.mask.max() <= 1.0 + 1e-5
    assert 0.05 < float(res.mask.mean()) < 0.95
    assert res.bfactor < 0                                    # auto-B sharpens
    half_res = F.resolution_at(F.fsc(h1, h2, grid.voxel_size), 0.143)
    assert 1.3 < res.resolution < 2.0 * half_res
    # cropped back in register: the sharpened map still correlates with the input in the mask
    avg = (h1 + h2) / 2
    assert F.pearson_cc(res.unmasked, avg, res.mask) > 0.5
    assert np.allclose(res.masked, res.unmasked * res.mask, atol=1e-3 * float(np.abs(res.unmasked).max()))
    assert any(c.startswith(relion_programs()["relion_postprocess"]) and "--auto_bfac" in c for c in res.commands)
    assert (tmp_path / "relion" / "PostProcess" / "postprocess.star").exists()


def test_relion_column_is_skipped_with_a_notice_when_relion_is_absent(monkeypatch):
    (h1, h2), grid = _halves()
    monkeypatch.setenv("PATH", "/nonexistent")
    printed = []
    ev = evaluate(grid, half1=h1, half2=h2, autob=False, log=printed.append)
    assert "RELION" not in ev.maps
    assert any("RELION column unavailable" in line and "not found" in line for line in printed)
