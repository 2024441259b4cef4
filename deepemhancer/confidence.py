"""Beyond the original: which regions of a processed map can be trusted, and how well resolved is the input.

* :func:`confidence_map`: the two half maps are processed independently; where the network gives the same answer
  from two independent noise realisations, the output is driven by the signal; where the answers differ, it is
  driven by noise. The confidence is the probability that the output's local error is below a tenth of the peak
  density, predicted from the local disagreement and calibrated against the known error of the synthetic
  validation maps; measured on the test maps by benchmarks/benchmark_confidence.py.
* :func:`local_resolution`: a fast windowed FSC of the input half maps: FSC in soft spherical windows on a coarse
  grid of centres, the 0.143 crossing per window, trilinearly interpolated to every voxel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .resample import resample_to_shape


# Default calibration, for models whose metadata carries none (``confidence_calibration``): fitted on 10 synthetic
# validation maps of the v1 tightTarget (stage 3, fast tiling). A model's own calibration is fitted and stored in
# its metadata by `benchmarks/benchmark_confidence.py --model MODEL.json --split val --limit 10 --fit-calibration
# --store`: the fraction of voxels within 4 A of the molecule whose error is below 0.1 x peak density, against the
# predicted error x, fitted by maximum likelihood to 1 / (1 + (x / x0) ** power). A density term
# (AMPLITUDE_WEIGHT > 0) ranked the voxel error slightly better with the earlier group-normalised model (Spearman
# 0.44 -> 0.50 on the test maps with weight 1) but marks the strongest, best-agreeing density as the least
# reliable, which would mislead a user reading the map: it is off by default.
AMPLITUDE_WEIGHT = 0.0
CALIBRATION_X0 = 0.2102
CALIBRATION_POWER = 1.822


def calibration_of(metadata_calibration: dict | None) -> tuple[float, float]:
    """``(x0, power)`` from a model's ``confidence_calibration`` metadata, or the defaults above when it has none."""
    if metadata_calibration:
        return float(metadata_calibration["x0"]), float(metadata_calibration["power"])
    return CALIBRATION_X0, CALIBRATION_POWER


def predicted_error(half1: np.ndarray, half2: np.ndarray, *, voxel_size: float = 1.0,
                    window_angstrom: float = 1.0, amplitude_weight: float = AMPLITUDE_WEIGHT) -> np.ndarray:
    """Local error of the halves' average predicted from their disagreement, in units of its peak density.

    ``sqrt(d^2 + (w * |m|)^2) / peak``: ``d`` is the local RMS difference of the processed halves (Gaussian window of
    ``window_angstrom``), the part of the output driven by noise; ``|m|`` the output's magnitude (an optional term,
    ``w = amplitude_weight``, for an amplitude bias that the halves share); ``peak`` the maximum of the smoothed
    ``|m|``.
    """
    a = np.asarray(half1, dtype=np.float32)
    b = np.asarray(half2, dtype=np.float32)
    sigma = max(0.5, window_angstrom / voxel_size)
    mean = 0.5 * (a + b)
    difference_sq = ndimage.gaussian_filter((a - b) ** 2, sigma, mode="nearest")
    peak = float(ndimage.gaussian_filter(np.abs(mean), sigma, mode="nearest").max()) or 1.0
    return (np.sqrt(difference_sq + (amplitude_weight * mean) ** 2) / peak).astype(np.float32)


def confidence_map(half1: np.ndarray, half2: np.ndarray, *, voxel_size: float = 1.0,
                   window_angstrom: float = 1.0, calibration: tuple[float, float] | None = None) -> np.ndarray:
    """Reliability (0..1) of a map processed from two independent half maps.

    The probability that the local error of the halves' average is below 0.1 x its peak density, from
    :func:`predicted_error` through the model's calibration. Empty solvent that both halves suppress is a confident
    "nothing" (1); strong density whose halves disagree is least trusted.

    Args:
        half1, half2: the processed halves on one grid.
        voxel_size: Angstrom per voxel.
        window_angstrom: SD of the Gaussian window.
        calibration: ``(x0, power)`` of the model (:func:`calibration_of`); None: the defaults.

    Returns:
        float32 map in [0, 1].
    """
    x0, power = calibration or calibration_of(None)
    x = predicted_error(half1, half2, voxel_size=voxel_size, window_angstrom=window_angstrom)
    return (1.0 / (1.0 + (x / x0) ** power)).astype(np.float32)


def _window_fsc_resolution(c1: np.ndarray, c2: np.ndarray, window: np.ndarray, shells: np.ndarray,
                           n_shells: int, voxel_size: float, threshold: float) -> float:
    f1 = np.fft.rfftn(c1 * window)
    f2 = np.fft.rfftn(c2 * window)
    num = np.bincount(shells, (f1 * np.conj(f2)).real.ravel(), n_shells)
    d1 = np.bincount(shells, (np.abs(f1) ** 2).ravel(), n_shells)
    d2 = np.bincount(shells, (np.abs(f2) ** 2).ravel(), n_shells)
    fsc = num / np.sqrt(np.maximum(d1 * d2, 1e-30))
    side = window.shape[0]
    if fsc[1] < threshold:
        return side * voxel_size  # not resolved even at the window's lowest frequency: report the window size
    for k in range(2, n_shells):
        if fsc[k] < threshold:
            # interpolate the crossing between shells k-1 and k
            f0, f1_ = fsc[k - 1], fsc[k]
            frac = np.clip((f0 - threshold) / max(f0 - f1_, 1e-9), 0.0, 1.0)
            return side * voxel_size / (k - 1 + frac)
    return 2.0 * voxel_size  # resolved to Nyquist within the window


def local_resolution(half1: np.ndarray, half2: np.ndarray, *, voxel_size: float = 1.0,
                     window_angstrom: float = 20.0, step_angstrom: float = 6.0, threshold: float = 0.143,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """Local resolution (Angstrom) of a pair of half maps by windowed FSC.

    Args:
        half1, half2: unprocessed half maps (z, y, x).
        voxel_size: Angstrom per voxel.
        window_angstrom: side of the cubic window (a soft sphere inside it).
        step_angstrom: spacing of window centres.
        threshold: FSC threshold (0.143 for half maps).
        mask: optional boolean map; windows whose centre falls outside get the box's worst value.

    Returns:
        float32 map of local resolution in Angstrom, same shape as the input.
    """
    a = np.asarray(half1, dtype=np.float32)
    b = np.asarray(half2, dtype=np.float32)
    side = max(8, int(round(window_angstrom / voxel_size)) // 2 * 2)
    step = max(1, int(round(step_angstrom / voxel_size)))
    r = np.sqrt(sum(g ** 2 for g in np.meshgrid(*[np.arange(side) - side / 2 + 0.5] * 3, indexing="ij")))
    window = np.clip((side / 2 - r) / 2.0, 0, 1).astype(np.float32)  # sphere with a 2-voxel soft edge
    freq = np.sqrt(sum(g ** 2 for g in np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side),
                                                   np.fft.rfftfreq(side), indexing="ij")))
    shells = np.minimum(np.round(freq * side).astype(int), side // 2).ravel()
    n_shells = side // 2 + 1
    pad = side // 2
    pa = np.pad(a, pad, mode="reflect")
    pb = np.pad(b, pad, mode="reflect")
    centres = [np.arange(0, n, step) for n in a.shape]
    coarse = np.empty(tuple(len(c) for c in centres), dtype=np.float32)
    for i, z in enumerate(centres[0]):
        for j, y in enumerate(centres[1]):
            for k, x in enumerate(centres[2]):
                if mask is not None and not mask[z, y, x]:
                    coarse[i, j, k] = np.nan
                    continue
                c1 = pa[z:z + side, y:y + side, x:x + side]
                c2 = pb[z:z + side, y:y + side, x:x + side]
                coarse[i, j, k] = _window_fsc_resolution(c1, c2, window, shells, n_shells, voxel_size, threshold)
    worst = np.nanmax(coarse) if np.isfinite(coarse).any() else side * voxel_size
    coarse = np.where(np.isfinite(coarse), coarse, worst)
    zoom = [n / c for n, c in zip(a.shape, coarse.shape)]
    fine = ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)
    if fine.shape != a.shape:  # rounding of the zoom factors
        fine = resample_to_shape(fine, a.shape) if min(fine.shape) > 1 else np.full(a.shape, worst)
    return fine.astype(np.float32)
