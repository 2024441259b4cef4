"""Stage 2: automatic noise estimation works where the original aborts or misestimates."""

import numpy as np
import pytest
from scipy import ndimage

from deepemhancer.errors import InputError
from deepemhancer.normalize import NoiseStats, estimate_noise_stats, normalize, normalize_with_mask

NOISE_MEAN, NOISE_STD = 0.3, 0.05
N = 96


def _grid():
    z, y, x = np.mgrid[:N, :N, :N].astype(np.float32)
    return z - N / 2, y - N / 2, x - N / 2


def _molecule_from(shape_mask, rng, height=0.4):
    """Protein-like density: a smooth random texture inside ``shape_mask``, positive contrast."""
    texture = ndimage.gaussian_filter(rng.standard_normal((N, N, N)), 1.5)
    texture = (texture - texture.min()) / np.ptp(texture)
    return height * ndimage.gaussian_filter(shape_mask.astype(np.float32), 1.0) * (0.5 + texture)


def _noisy(signal, rng):
    noise = ndimage.gaussian_filter(rng.standard_normal((N, N, N)), 0.7)  # correlated, like real maps
    noise = noise / noise.std() * NOISE_STD
    return (signal + NOISE_MEAN + noise).astype(np.float32)


def _case(kind, rng):
    z, y, x = _grid()
    r = np.sqrt(z ** 2 + y ** 2 + x ** 2)
    if kind == "globular":
        return _molecule_from(r < 22, rng)
    if kind == "hollow":  # a virus-like shell: solvent inside and outside
        return _molecule_from((r > 30) & (r < 40), rng)
    if kind == "fibre":  # crosses the whole box along z
        return _molecule_from(np.sqrt(y ** 2 + (x - 5) ** 2) < 14, rng)
    if kind == "full_box":  # molecules fill about 70 % of the box
        blobs = np.zeros((N, N, N), bool)
        for cz, cy, cx in rng.integers(0, N, size=(40, 3)):
            blobs |= (z + N / 2 - cz) ** 2 + (y + N / 2 - cy) ** 2 + (x + N / 2 - cx) ** 2 < 17 ** 2
        return _molecule_from(blobs, rng)
    if kind == "off_centre":
        return _molecule_from(np.sqrt((z - 25) ** 2 + (y + 20) ** 2 + x ** 2) < 15, rng)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["globular", "hollow", "fibre", "full_box", "off_centre"])
def test_auto_noise_estimate(kind):
    rng = np.random.default_rng(1)
    signal = _case(kind, rng)
    stats = estimate_noise_stats(_noisy(signal, rng))
    assert stats.std == pytest.approx(NOISE_STD, rel=0.15), stats
    assert stats.mean == pytest.approx(NOISE_MEAN, abs=0.3 * NOISE_STD), stats


def test_depositor_masked_map_ignores_exact_zeros():
    rng = np.random.default_rng(2)
    z, y, x = _grid()
    r = np.sqrt(z ** 2 + y ** 2 + x ** 2)
    soft = np.clip((40 - r) / 4, 0, 1)  # soft spherical mask, exact zeros beyond r = 40
    noisy = _noisy(_molecule_from(r < 20, rng), rng) - NOISE_MEAN
    masked = (noisy * soft).astype(np.float32)
    assert (masked == 0).mean() > 0.4
    stats = estimate_noise_stats(masked)
    assert stats.std == pytest.approx(NOISE_STD, rel=0.2)
    assert abs(stats.mean) < 0.3 * NOISE_STD


def test_normalize_gives_noise_sd_01():
    rng = np.random.default_rng(3)
    noise = (NOISE_MEAN + NOISE_STD * rng.standard_normal((32, 32, 32))).astype(np.float32)
    out = normalize(noise, NoiseStats(NOISE_MEAN, NOISE_STD))
    assert out.dtype == np.float32
    assert out.mean() == pytest.approx(0, abs=0.01) and out.std() == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan")])
def test_normalize_rejects_bad_std(std):
    with pytest.raises(InputError, match="standard deviation"):
        normalize(np.zeros((4, 4, 4), np.float32), NoiseStats(0.0, std))


def test_map_without_solvent_is_a_clear_error():
    only_zeros_and_molecule = np.zeros((40, 40, 40), np.float32)
    only_zeros_and_molecule[10:30, 10:30, 10:30] = 1.0
    with pytest.raises(InputError, match="noiseStats"):
        estimate_noise_stats(only_zeros_and_molecule)


def test_mask_normalisation():
    rng = np.random.default_rng(4)
    z, y, x = _grid()
    mask = (np.sqrt(z ** 2 + y ** 2 + x ** 2) < 20).astype(np.float32)
    data = _noisy(_case("globular", rng), rng)
    out = normalize_with_mask(data, mask)
    inside = out[mask > 0]
    assert np.all(out[ndimage.grey_dilation(mask, size=3) == 0] == 0)
    assert abs(np.median(inside)) < 0.2
    with pytest.raises(InputError, match="same grid"):
        normalize_with_mask(data, mask[:-1])
    with pytest.raises(InputError, match="constant"):
        normalize_with_mask(data, np.zeros_like(mask))


def test_signal_gain_is_the_envelope_percentile_and_refuses_inverted_maps():
    from deepemhancer.normalize import signal_gain
    rng = np.random.default_rng(4)
    data = (0.1 * rng.standard_normal((40, 40, 40))).astype(np.float32)
    envelope = np.zeros(data.shape, bool)
    envelope[10:30, 10:30, 10:30] = True
    data[envelope] += 2.0
    gain = signal_gain(data, envelope)
    assert gain == pytest.approx(np.percentile(data[envelope], 99))
    assert signal_gain(3 * data, envelope) == pytest.approx(3 * gain)         # scales with the map
    assert signal_gain(data, np.zeros(data.shape, bool)) == pytest.approx(np.percentile(data, 99))
    with pytest.raises(InputError, match="sign"):
        signal_gain(-np.abs(data), envelope)
