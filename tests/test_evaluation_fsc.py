"""FSC, resolution, CC and masks on analytic cases."""

import numpy as np
import pytest

from deepemhancer.evaluation import fsc as F
from deepemhancer.evaluation.sharpen import apply_bfactor


def _noise(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_identical_maps_give_fsc_one_at_every_shell():
    a = _noise((40, 36, 44), 0)  # non-cubic box
    curve = F.fsc(a, a, (1.2, 1.2, 1.2))
    assert np.allclose(curve.fsc, 1.0, atol=1e-9)
    assert F.resolution_at(curve, 0.143) == pytest.approx(2.4, rel=0.05)  # never crosses: Nyquist


def test_fsc_is_invariant_to_scale_and_offset_except_dc():
    a = _noise((32, 32, 32), 1)
    curve = F.fsc(a, 3.0 * a + 7.0, 1.0)
    assert np.allclose(curve.fsc[1:], 1.0, atol=1e-9)


def test_independent_noise_gives_fsc_near_zero():
    a, b = _noise((48, 48, 48), 2), _noise((48, 48, 48), 3)
    curve = F.fsc(a, b, 1.0)
    big = curve.n_coefficients > 500
    # expected spread of the FSC of independent noise is 1/sqrt(n); allow 4 sigma
    assert np.all(np.abs(curve.fsc[big]) < 4.0 / np.sqrt(curve.n_coefficients[big]))
    assert abs(np.mean(curve.fsc[big])) < 0.02


def test_shell_layout_respects_voxel_size_and_box_shape():
    a = _noise((30, 40, 50), 4)
    curve = F.fsc(a, a, (2.0, 1.0, 1.5))  # x 2.0 A, y 1.0 A, z 1.5 A
    # shells are one Fourier pixel of the longest edge (50 * 2 A = 100 A) and stop at the lowest Nyquist (1/4 A^-1)
    assert curve.frequency[1] == pytest.approx(1 / 100.0)
    assert curve.frequency[-1] <= 0.25 + 1e-9
    assert curve.frequency[-1] > 0.25 - 1 / 100.0
    # all coefficients within the Nyquist sphere are counted once (rfft weights restore the full spectrum)
    s = F.frequency_magnitude((30, 40, 50), (2.0, 1.0, 1.5), real=False)
    assert curve.n_coefficients.sum() == pytest.approx(np.sum(np.rint(s * 100) < len(curve.fsc)))


def test_gaussian_blur_plus_noise_follows_the_analytic_fsc():
    """Map y = g * x + n with white x (power P) and white n (power N): FSC(y, x) = g / sqrt(g^2 + N/P).

    The amplitude ratio |Y|/|X| of the noiseless blurred map is g itself, g(s) = exp(-2 pi^2 sigma^2 s^2), i.e.
    a B-factor B = 8 pi^2 sigma^2. The real-space blur (zero boundary) follows it away from the box edges.
    """
    shape, voxel, sigma = (60, 64, 56), 1.0, 1.5
    x = _noise(shape, 5)
    blurred = apply_bfactor(x, voxel, 8 * np.pi ** 2 * sigma ** 2)
    freq, ax = F.shell_average(x, voxel)
    _, ab = F.shell_average(blurred, voxel)
    g = np.exp(-2 * np.pi ** 2 * sigma ** 2 * freq ** 2)
    sel = (freq > 0.02) & (g > 0.05)
    assert np.allclose(ab[sel] / ax[sel], g[sel], rtol=0.03)
    real_space = F.gaussian_blur(x, sigma, voxel)
    inner = (slice(8, -8),) * 3
    assert F.pearson_cc(real_space[inner], blurred[inner]) > 0.99

    noise_ratio = 0.05  # N / P
    y = blurred + np.sqrt(noise_ratio) * _noise(shape, 6)
    curve = F.fsc(y, x, voxel)
    expected = g / np.sqrt(g ** 2 + noise_ratio)
    big = (curve.n_coefficients > 300)
    assert np.max(np.abs(curve.fsc[big] - expected[big])) < 0.06
    # the 0.5 crossing: g^2 / (g^2 + r) = 1/4  ->  g = sqrt(r / 3)
    s_half = np.sqrt(-np.log(np.sqrt(noise_ratio / 3)) / (2 * np.pi ** 2 * sigma ** 2))
    assert F.resolution_at(curve, 0.5) == pytest.approx(1 / s_half, rel=0.05)


def test_global_bfactor_leaves_fsc_unchanged():
    x, n = _noise((40, 40, 40), 7), _noise((40, 40, 40), 8)
    ref = F.fsc(x + n, x, 1.0)
    sharp = F.fsc(apply_bfactor(x + n, 1.0, -80.0), x, 1.0)
    # shell by shell up to the small change of weights inside each shell
    assert np.allclose(ref.fsc[1:], sharp.fsc[1:], atol=0.015)


def test_resolution_at_interpolates_first_crossing():
    curve = F.FSCCurve(frequency=np.array([0.0, 0.1, 0.2, 0.3, 0.4]), fsc=np.array([1.0, 0.9, 0.7, 0.3, 0.6]),
                       n_coefficients=np.ones(5))
    # 0.5 first crossed between 0.2 (0.7) and 0.3 (0.3): s = 0.25 -> 4 A; the later rise is ignored
    assert F.resolution_at(curve, 0.5) == pytest.approx(4.0)
    assert F.resolution_at(curve, 0.143) == pytest.approx(2.5)  # never below: last shell


def test_pearson_cc_analytic_cases():
    a = _noise((24, 24, 24), 9)
    assert F.pearson_cc(a, 2 * a + 5) == pytest.approx(1.0)
    assert F.pearson_cc(a, -a) == pytest.approx(-1.0)
    b = _noise((24, 24, 24), 10)
    # a + s*b with independent unit-variance b: CC = 1 / sqrt(1 + s^2)
    assert F.pearson_cc(a, a + 0.5 * b) == pytest.approx(1 / np.sqrt(1.25), abs=0.01)
    assert abs(F.pearson_cc(a, b)) < 0.03


def test_masked_cc_ignores_voxels_outside_the_mask():
    a, b = _noise((24, 24, 24), 11), _noise((24, 24, 24), 12)
    mask = np.zeros(a.shape, dtype=np.float32)
    mask[4:20, 4:20, 4:20] = 1
    c = a.copy()
    c[mask == 0] = b[mask == 0]  # agree inside, disagree outside
    assert F.pearson_cc(a, c, mask) == pytest.approx(1.0)
    assert F.pearson_cc(a, c) < 0.5


def test_soft_edge_mask_extends_and_falls_off_with_a_cosine():
    binary = np.zeros((41, 41, 41), dtype=bool)
    binary[20, 20, 20] = True
    m = F.soft_edge(binary, 0.5, extend_angstrom=2.0, edge_angstrom=4.0)
    assert m[20, 20, 20] == 1.0
    assert m[20, 20, 24] == 1.0                   # 2 A away: inside the extension
    assert m[20, 20, 28] == pytest.approx(0.5)   # 4 A: halfway down the 4 A edge
    assert m[20, 20, 33] == 0.0                  # 6.5 A: outside
    assert 0 <= m.min() and m.max() <= 1


def test_model_envelope_mask_covers_the_density():
    model = np.zeros((32, 32, 32), dtype=np.float32)
    model[10:20, 12:18, 14:22] = 1.0
    env = F.model_envelope_mask(model, 1.0)
    assert np.all(env[model > 0] == 1.0)
    assert env[0, 0, 0] == 0.0


def test_local_cc_is_one_for_identical_and_low_for_independent_maps():
    a, b = _noise((32, 32, 32), 13), _noise((32, 32, 32), 14)
    assert np.allclose(F.local_cc(a, a, 1.0, 6.0)[8:-8, 8:-8, 8:-8], 1.0, atol=1e-5)
    assert abs(float(F.local_cc(a, b, 1.0, 6.0)[8:-8, 8:-8, 8:-8].mean())) < 0.1


def test_halfmap_fsc_and_its_full_map_correction():
    """Halves x + n1, x + n2 with N/P = r: FSC_half = 1 / (1 + r) and the full map's 2F / (1 + F) = 2 / (2 + r)."""
    x = _noise((48, 48, 48), 15)
    r = 1.0
    h1, h2 = x + _noise(x.shape, 16), x + _noise(x.shape, 17)
    big = slice(4, None)
    half = F.halfmap_fsc(h1, h2, 1.0)
    assert np.allclose(half.fsc[big], 1 / (1 + r), atol=0.06)
    full = F.halfmap_fsc(h1, h2, 1.0, full_map=True)
    assert np.allclose(full.fsc[big], 2 / (2 + r), atol=0.06)
    # C_ref = sqrt(full) is what the average of the halves shows against the truth: 1 / sqrt(1 + r/2)
    vs_truth = F.fsc((h1 + h2) / 2, x, 1.0).fsc[big]
    assert np.allclose(vs_truth, 1 / np.sqrt(1 + r / 2), atol=0.05)
    assert np.allclose(vs_truth, np.sqrt(full.fsc[big]), atol=0.05)


def test_halfmap_resolution_reads_the_central_box_and_follows_the_noise():
    """The quick estimate is the FSC 0.143 crossing of the central box; more noise, worse resolution."""
    signal = apply_bfactor(_noise((80, 72, 64), 18), 1.0, 120.0)
    signal /= signal.std()
    h1, h2 = signal + 0.3 * _noise(signal.shape, 19), signal + 0.3 * _noise(signal.shape, 20)
    box = (slice(16, 64), slice(12, 60), slice(8, 56))
    central = F.resolution_at(F.fsc(h1[box], h2[box], 1.0), 0.143)
    assert F.halfmap_resolution(h1, h2, 1.0, max_box=48) == pytest.approx(central)
    clean = F.halfmap_resolution(h1, h2, 1.0)
    noisy = F.halfmap_resolution(signal + 3 * _noise(signal.shape, 21), signal + 3 * _noise(signal.shape, 22), 1.0)
    assert 2.0 <= clean < noisy
