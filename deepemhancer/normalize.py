"""Stage 2: bring the map's noise to mean 0 and standard deviation 0.1, as the network expects.

Three modes, as in the original program:

* fixed statistics (``--noiseStats MEAN STD``): ``x -> (x - MEAN) / (10 * STD)``;
* automatic: the same with MEAN/STD measured on the solvent by :func:`estimate_noise_stats`;
* binary mask (``-m``): median/inter-percentile normalisation inside the mask, for the masked model.

Why a new automatic estimator: the original one looks for a radial trend of the local variance around the box
centre, so it aborts on hollow particles (viruses), misplaces the solvent of fibres and of maps that fill the box,
and counts depositor-masked exact zeros as noise. Ours does not assume a centred globular particle: it finds the
solvent as the voxels whose low-pass value is not significantly above the solvent level (iterated robust
statistics, so the solvent level is found even when molecule voxels are the majority), ignores exact-constant
plateaus left by masking, and measures mean and SD of the raw map there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError

#: Noise SD after normalisation; the network was trained for it.
TARGET_NOISE_STD = 0.1


@dataclass(frozen=True)
class NoiseStats:
    """Mean and standard deviation of the solvent noise, in the map's own units."""

    mean: float
    std: float
    n_voxels: int = 0
    method: str = "given"


def normalize(data: np.ndarray, stats: NoiseStats) -> np.ndarray:
    """Scale a map so that its noise has mean 0 and SD 0.1: ``(x - mean) / (10 * std)``."""
    if not np.isfinite(stats.std) or stats.std <= 0:
        raise InputError(f"noise standard deviation must be positive, got {stats.std}. Measure it on a solvent "
                         f"region (e.g. ChimeraX 'measure mapstats' on a box outside the particle).")
    if not np.isfinite(stats.mean):
        raise InputError(f"noise mean must be a finite number, got {stats.mean}.")
    return ((data - np.float32(stats.mean)) / np.float32(stats.std / TARGET_NOISE_STD)).astype(np.float32, copy=False)


COARSE_VOXELS = 2 ** 21  # maps above this many voxels (128^3) are searched for solvent and signal on a coarser grid


def coarse_step(shape: tuple[int, ...], max_voxels: int = COARSE_VOXELS) -> int:
    """Voxels per axis of one coarse voxel: 1 up to ``max_voxels``, 2 for a 256^3 box, 4 for 512^3."""
    return max(1, int(np.floor(np.cbrt(float(np.prod(shape)) / max_voxels))))


def coarse_lowpass(data: np.ndarray, sigma: float, step: int) -> np.ndarray:
    """Gaussian low-pass (``sigma`` voxels) of ``data`` sampled every ``step`` voxels along each axis.

    With ``step > 1`` the map is averaged over ``step``^3 blocks (the last incomplete block of each axis dropped)
    and the blocks are filtered with what is left of ``sigma`` after the averaging, which costs ``step``^3 times
    less than filtering the full map (12 s for two filters of a 512^3 map on 2 cores): the searches for solvent and
    signal only need the low-passed map's large-scale shape.
    """
    if step == 1:
        return ndimage.gaussian_filter(np.asarray(data), sigma, mode="nearest", output=np.float32)
    n = [size // step for size in data.shape]
    blocks = np.asarray(data)[:n[0] * step, :n[1] * step, :n[2] * step].reshape(
        n[0], step, n[1], step, n[2], step).mean(axis=(1, 3, 5), dtype=np.float32)
    residual = np.sqrt(max(sigma ** 2 - (step ** 2 - 1) / 12.0, 0.25)) / step
    return ndimage.gaussian_filter(blocks, residual, mode="nearest", output=np.float32)


def _constant_plateau(data: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Voxels that hold exactly the most frequent value when that value covers a large area (masked maps)."""
    sample = data.ravel()[:: max(1, data.size // 200_000)]
    values, counts = np.unique(sample, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < min_fraction * sample.size:
        return np.zeros(data.shape, dtype=bool)
    return data == values[top]


def solvent_peak(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """Position and low-side robust width of the tallest peak of a value histogram."""
    lo, hi = np.percentile(values, [0.1, 99.9])
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    hist = ndimage.gaussian_filter1d(hist.astype(float), 2)
    peak = int(np.argmax(hist))
    level = float(0.5 * (edges[peak] + edges[peak + 1]))
    below = values[values < level]
    spread = 1.4826 * float(np.median(level - below)) if below.size else float(np.std(values))
    return level, max(spread, float(edges[1] - edges[0]))


def estimate_noise_stats(data: np.ndarray, *, voxel_size: float = 1.0, lowpass_angstrom: float = 4.0,
                         significance: float = 2.5, margin_angstrom: float = 3.0,
                         iterations: int = 8, max_voxels: int = COARSE_VOXELS) -> NoiseStats:
    """Measure the solvent noise of a map automatically.

    1. Exact-constant plateaus covering >= 2 % of the box (depositor masks) are excluded.
    2. The map is low-pass filtered (Gaussian, ``lowpass_angstrom``). Solvent voxels are those whose filtered value
       is below ``level + significance * spread``, where level/spread are the median/MAD of the filtered values of
       the current solvent estimate; the molecule is dilated by ``margin_angstrom``. Iterating lets the estimate
       walk down to the solvent even when the molecule fills most of the box; nothing assumes a centred or
       globular particle, so hollow particles and fibres work.
    3. Mean and SD of the raw map over the final solvent voxels.

    Maps above :data:`COARSE_VOXELS` run steps 2-3 on a coarse grid (:func:`coarse_step`; a 256^3 box: every 2nd
    voxel per axis) with the low-pass of :func:`coarse_lowpass`, and the statistics come from the raw voxel at the
    corner of each coarse voxel: the solvent's mean and SD from 2 M of its voxels are as good as from all of them,
    and a 256^3 map takes 1 s instead of 7.

    Raises:
        InputError: when no solvent can be found (then give ``--noiseStats`` or a mask).
    """
    x = np.asarray(data, dtype=np.float32)
    valid = ~_constant_plateau(x)
    if valid.sum() < 1000:
        raise InputError("the map is almost entirely one constant value; it cannot be normalised automatically. "
                         "Give --noiseStats MEAN STD or a binary mask (-m).")
    sigma = max(0.5, lowpass_angstrom / 2.355 / max(voxel_size, 1e-3))
    # filter with plateaus filled by the valid mean so mask edges do not look like density
    filled = np.where(valid, x, np.float32(x[valid].mean()))
    step = coarse_step(x.shape, max_voxels)
    smooth = coarse_lowpass(filled, sigma, step)
    del filled
    if step > 1:
        corners = tuple(slice(0, n * step, step) for n in smooth.shape)
        x, valid = np.ascontiguousarray(x[corners]), np.ascontiguousarray(valid[corners])
    margin = max(1, int(round(margin_angstrom / max(voxel_size * step, 1e-3))))
    min_voxels = max(500, int(0.005 * valid.sum()))
    # start from the solvent peak of the histogram: after low-pass filtering, solvent values crowd into one narrow
    # peak while molecule values spread widely, so the tallest peak is the solvent even when molecule voxels are
    # the majority; its width is measured on its low side, which molecule density does not reach
    level, spread = solvent_peak(smooth[valid])
    molecule = ndimage.binary_dilation(smooth > level + significance * spread, iterations=margin)
    solvent = valid & ~molecule
    if solvent.sum() < min_voxels:
        solvent = valid.copy()
    for _ in range(iterations):
        values = smooth[solvent]
        level = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - level)))
        if spread <= 0:
            break
        molecule = smooth > level + significance * spread
        molecule = ndimage.binary_dilation(molecule, iterations=margin)
        new_solvent = valid & ~molecule
        if new_solvent.sum() < min_voxels or np.array_equal(new_solvent, solvent):
            solvent = new_solvent if new_solvent.sum() >= min_voxels else solvent
            break
        solvent = new_solvent
    noise = x[solvent]
    if noise.size < min_voxels or float(noise.std()) <= 0:
        raise InputError("could not find enough solvent to measure the noise automatically (the map may be masked "
                         "to the molecule, or already sharpened and masked). Give --noiseStats MEAN STD or a binary "
                         "mask (-m), and prefer raw unmasked half maps as input.")
    return NoiseStats(mean=float(noise.mean()), std=float(noise.std()), n_voxels=int(noise.size), method="auto")


def normalize_with_mask(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Binary-mask normalisation of the masked model (the original's ``inputNormalizationWithMask_2``).

    The mask is grey-dilated (size 3) and binarised at 1 % of its range (:func:`binarise_mask`); inside it, voxels
    above 0 give the median and the 10-95 % inter-percentile range; the map is centred on that median, divided by
    that range and multiplied by the mask (:func:`normalize_in_binary_mask`).
    """
    return normalize_in_binary_mask(data, binarise_mask(mask, data.shape))


def binarise_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The original's binarisation of a user's mask for a map of ``shape``: grey-dilated (size 3), above 1 % of its
    range. Once per map: the volumes of one run (both half maps) share it."""
    if mask.shape != tuple(shape):
        raise InputError(f"the mask has shape {mask.shape} but the map has shape {tuple(shape)}; they must be on "
                         f"the same grid (resample the mask onto the map first).")
    m = ndimage.grey_dilation(np.asarray(mask, dtype=np.float32), size=3)
    lo, hi = float(m.min()), float(m.max())
    if hi <= lo:
        raise InputError("the binary mask is constant (all zeros or all ones); it must outline the molecule.")
    return m > lo + 0.01 * (hi - lo)


def normalize_in_binary_mask(data: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """:func:`normalize_with_mask` with the mask already binarised by :func:`binarise_mask`."""
    inside = data[binary & (data > 0)]
    if inside.size < 100:
        raise InputError("fewer than 100 positive map voxels lie inside the mask: is the mask on the right map and "
                         "with the right hand/origin?")
    median = float(np.median(inside))
    p10, p95 = np.percentile(inside, [10, 95])
    iqr = float(p95 - p10)
    if iqr <= 0:
        raise InputError("the map is constant inside the mask; nothing to normalise.")
    return ((data - median) / iqr * binary).astype(np.float32)


def solvent_centred(data: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """The map minus its solvent level, the median outside the user's mask (binarised by :func:`binarise_mask`):
    input density with the solvent at 0 everywhere, which the protect mask blends back in (the mask normalisation
    is centred on the median inside the mask and zero outside it). No noise estimate: it fails on depositor-masked
    maps, which -m users often give.
    """
    outside = data[~binary]
    level = float(np.median(outside)) if outside.size else 0.0
    return (data - np.float32(level)).astype(np.float32)


def signal_gain(data: np.ndarray, envelope: np.ndarray | None = None, percentile: float = 99.0) -> float:
    """The map's signal level: the ``percentile``-th percentile of the noise-normalised map inside the molecule's
    envelope (the whole map if the envelope is empty).

    Models without normalisation layers see the map divided by this number, so that density of a given strength
    relative to the map's strongest density looks the same in a noisy and in a clean map. Group normalisation gave
    the paper's network that invariance cube by cube; one number per map gives it without making the output depend
    on the tiling.
    """
    values = data[envelope] if envelope is not None and envelope.any() else data.ravel()
    gain = float(np.percentile(values, percentile))
    if not np.isfinite(gain) or gain <= 0:
        raise InputError("the map has no positive density inside its envelope; check the map's sign (density "
                         "must be positive) and its noise statistics.")
    return gain
