"""Stage 5: tiling, prediction in batches and blending."""

import numpy as np
import pytest
from scipy import ndimage

from deepemhancer.tiling import TilingPlan, count_cubes, cube_starts, predict_tiled, signal_envelope


def _coverage_1d(n_padded, cube=64, stride=16):
    c = np.zeros(n_padded)
    for s in range(0, n_padded - cube + 1, stride):
        c[s:s + cube] += 1
    return c


def test_original_tiling_reproduces_the_hand_computed_average():
    """The original averages the cube predictions with weights that start at 1: sum / (count + 1)."""
    shape = (64, 72, 80)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = predict_tiled(x, lambda b: b * 2.0, TilingPlan.for_mode("original"), batch_size=3)
    # padded sizes: 64 + 16, 72 + 8, 80 + 16 (always 1..16 voxels, a full 16 when divisible)
    counts = [_coverage_1d(n)[:m] for n, m in zip((80, 80, 96), shape)]
    count = counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    np.testing.assert_allclose(out, 2.0 * x * count / (count + 1), rtol=1e-5, atol=1e-6)
    # corners are seen by one cube -> 1/2; voxel (40, 40, 48) by 2 * 2 * 3 cubes -> 12/13
    assert out[0, 0, 0] == pytest.approx(x[0, 0, 0], rel=1e-5)
    assert out[40, 40, 48] == pytest.approx(2 * x[40, 40, 48] * 12 / 13, rel=1e-5)


def test_original_cube_count_and_order():
    plan = TilingPlan.for_mode("original")
    assert count_cubes((256, 256, 256), plan) == 14 ** 3          # 272 padded: (272 - 64) / 16 + 1 = 14
    assert count_cubes((128, 128, 128), plan) == 6 ** 3
    starts = cube_starts((80, 80, 96), 64, 16)
    assert starts[:3] == [(0, 0, 0), (0, 0, 16), (0, 0, 32)]   # i -> j -> k loop order


def test_fast_tiling_is_exact_for_pointwise_functions_and_evaluates_few_cubes():
    x = np.random.default_rng(1).standard_normal((70, 81, 90)).astype(np.float32)
    plan = TilingPlan(cube=64, stride=32, mode="fast", skip_empty=False)
    out = predict_tiled(x, np.tanh, plan, batch_size=4)
    np.testing.assert_allclose(out, np.tanh(x), atol=1e-5)
    # the last voxel must lie in the core of the last cube: 256 + 16 - 64 = 208 -> 7 strides, 8 cubes per axis
    assert count_cubes((256, 256, 256), TilingPlan.for_mode("fast")) == 8 ** 3


def test_fast_cubes_start_at_the_first_voxel_like_the_originals():
    """Cubes centred on the box faces would hold mostly solvent, which the network turns into texture."""
    seen = []

    def predict(batch):
        seen.extend(batch[:, 0, 0, 0, 0].tolist())
        return batch
    x = np.arange(100 ** 3, dtype=np.float32).reshape((100,) * 3)
    predict_tiled(x, predict, TilingPlan(cube=64, stride=32, mode="fast", skip_empty=False))
    assert seen[0] == x[0, 0, 0]                                  # first cube: corner at voxel (0, 0, 0)
    assert {0.0, float(x[32, 32, 32]), float(x[64, 64, 64])} <= set(seen)


def test_cubes_outside_the_mask_are_skipped():
    x = np.zeros((128, 128, 128), np.float32)
    mask = np.zeros(x.shape, bool)
    mask[10:30, 10:30, 10:30] = True
    seen = []

    def predict(batch):
        seen.append(len(batch))
        return batch + 1.0
    out = predict_tiled(x, predict, TilingPlan.for_mode("fast"), mask=mask)
    assert sum(seen) < count_cubes(x.shape, TilingPlan.for_mode("fast")) / 4
    assert np.all(out[10:30, 10:30, 10:30] == pytest.approx(1.0))
    assert np.all(out[100:, 100:, 100:] == 0)  # skipped cubes give the background value


def test_signal_envelope_finds_a_blob_and_ignores_noise():
    rng = np.random.default_rng(2)
    x = (0.1 * rng.standard_normal((64, 64, 64))).astype(np.float32)
    x[20:30, 20:30, 20:30] += 0.5
    env = signal_envelope(x)
    assert env[25, 25, 25] and env[20:30, 20:30, 20:30].all()
    assert env.mean() < 0.2


def test_progress_is_reported_per_batch():
    calls = []
    predict_tiled(np.zeros((64, 64, 64), np.float32), lambda b: b, TilingPlan.for_mode("original"), batch_size=5,
                  progress=calls.append)
    assert calls[-1] == count_cubes((64, 64, 64), TilingPlan.for_mode("original")) == 8
    assert calls == [5, 8]


def test_default_and_original_tilings_agree_with_the_shipped_model():
    """The shipped tightTarget has no normalisation layers, so the fast tiling (large cubes, few overlaps, empty
    cubes skipped) gives the output of the original's 64^3 cubes at stride 16 on a real map."""
    from conftest import data_path
    from deepemhancer.api import EnhanceOptions, enhance
    from deepemhancer.io import read_map
    from deepemhancer.models import find_model, load_model

    data, grid = read_map(data_path("emd_3488.mrc"))
    model = load_model(find_model("tightTarget"))
    out = {tiling: enhance(data[14:86, 14:86, 14:86], grid.voxel_size[0], model=model,
                           options=EnhanceOptions(tiling=tiling, progress=False))
           for tiling in ("fast", "original")}
    assert out["fast"].cubes_evaluated < out["original"].cubes_evaluated
    assert np.corrcoef(out["fast"].data.ravel(), out["original"].data.ravel())[0, 1] >= 0.99


def test_a_map_smaller_than_the_fast_cube_gets_a_cube_of_its_size():
    plan = TilingPlan.for_mode("fast", cube=128, stride=112)
    small = plan.fitted((60, 50, 40))
    assert (small.cube, small.stride) == (80, 64)                  # 60 + 16 overlap, rounded up to 16
    assert plan.fitted((200, 200, 200)) == plan
    assert TilingPlan.for_mode("original").fitted((30, 30, 30)) == TilingPlan.for_mode("original")
    x = np.random.default_rng(3).standard_normal((60, 50, 40)).astype(np.float32)
    np.testing.assert_allclose(predict_tiled(x, np.tanh, small), np.tanh(x), atol=1e-5)
    assert count_cubes(x.shape, small) == 1


def test_coarse_searches_of_large_maps_match_the_full_resolution_ones():
    """A 256^3 map is searched for solvent and signal on a 2x coarser grid: the envelope only grows (every voxel of
    the full-resolution envelope stays in it) and the noise statistics are as close to the truth (mean 0, SD 0.05)."""
    from deepemhancer.normalize import estimate_noise_stats
    rng = np.random.default_rng(4)
    density = np.zeros((256,) * 3, np.float32)
    for c in rng.normal(128, 25, size=(60, 3)).clip(20, 236).astype(int):
        density[tuple(c)] += 1.0
    density = ndimage.gaussian_filter(density, 4.0)
    noisy = density / density.max() + 0.05 * rng.standard_normal(density.shape).astype(np.float32)
    fine = estimate_noise_stats(noisy, max_voxels=10 ** 9)
    coarse = estimate_noise_stats(noisy)
    assert coarse.n_voxels < fine.n_voxels / 4
    for stats in (fine, coarse):
        assert abs(stats.mean) < 0.05 * 0.05 and abs(stats.std - 0.05) < 0.02 * 0.05
    assert abs(coarse.mean) <= abs(fine.mean) + 0.005 * 0.05
    normalised = (noisy - fine.mean) / (10 * fine.std)
    fine_envelope = signal_envelope(normalised, max_voxels=10 ** 9)
    coarse_envelope = signal_envelope(normalised)
    assert 0.01 < fine_envelope.mean() < 0.9
    assert coarse_envelope[fine_envelope].all()
    assert coarse_envelope.sum() < 1.3 * fine_envelope.sum()
