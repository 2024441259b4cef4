"""Baseline: global automatic B-factor sharpening (Rosenthal & Henderson 2003 style, no FSC weighting).

The Guinier plot ln|F| against s^2 is fitted by a straight line between 10 Angstrom and the FSC resolution; the
map is multiplied in Fourier space by exp(+B s^2 / 4) (i.e. a B-factor of -B is applied, flattening the fall-off),
and low-passed at the FSC resolution with a raised-cosine edge so that noise beyond it is not amplified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fsc import frequency_magnitude, shell_average

__all__ = ["GuinierFit", "guinier_bfactor", "apply_bfactor", "lowpass", "auto_sharpen"]


@dataclass(frozen=True)
class GuinierFit:
    """``ln|F| = intercept + slope * s^2`` fitted between ``low_res`` and ``high_res`` Angstrom; B = -4 slope."""

    bfactor: float
    slope: float
    intercept: float
    low_res: float
    high_res: float
    n_shells: int


def guinier_bfactor(data: np.ndarray, voxel_size, high_res: float, low_res: float = 10.0) -> GuinierFit:
    """Apparent B-factor of a map from its rotationally averaged amplitudes.

    Args:
        data: ``(z, y, x)`` map.
        voxel_size: Angstrom (scalar or ``(x, y, z)``).
        high_res: highest resolution of the fit (the FSC resolution), Angstrom.
        low_res: lowest resolution of the fit (10 A, where the Wilson regime starts for proteins).
    """
    freq, amp = shell_average(data, voxel_size)
    s2 = freq ** 2
    sel = (freq >= 1.0 / low_res) & (freq <= 1.0 / high_res) & (amp > 0)
    if sel.sum() < 3:
        raise ValueError(f"too few Fourier shells between {low_res} and {high_res} A for a Guinier fit "
                         f"({int(sel.sum())}); the box is too small or the resolution too low.")
    slope, intercept = np.polyfit(s2[sel], np.log(amp[sel]), 1)
    return GuinierFit(bfactor=float(-4.0 * slope), slope=float(slope), intercept=float(intercept),
                      low_res=float(low_res), high_res=float(high_res), n_shells=int(sel.sum()))


def _apply_filter(data: np.ndarray, voxel_size, filt) -> np.ndarray:
    data = np.asarray(data, dtype=np.float64)
    spec = np.fft.rfftn(data)
    s = frequency_magnitude(data.shape, voxel_size)
    return np.fft.irfftn(spec * filt(s), s=data.shape, axes=(0, 1, 2)).astype(np.float32)


def apply_bfactor(data: np.ndarray, voxel_size, bfactor: float) -> np.ndarray:
    """Multiply the amplitudes by exp(-B s^2 / 4): positive B blurs, negative B sharpens."""
    return _apply_filter(data, voxel_size, lambda s: np.exp(-bfactor * s * s / 4.0))


def _cosine_edge(s: np.ndarray, resolution: float, edge_width: float) -> np.ndarray:
    """1 below 1/resolution - edge/2, raised-cosine to 0 at 1/resolution + edge/2 (edge in 1/A)."""
    s0 = 1.0 / resolution
    lo, hi = s0 - edge_width / 2.0, s0 + edge_width / 2.0
    out = np.ones_like(s)
    out[s >= hi] = 0.0
    ramp = (s > lo) & (s < hi)
    out[ramp] = 0.5 + 0.5 * np.cos(np.pi * (s[ramp] - lo) / (hi - lo))
    return out


def lowpass(data: np.ndarray, voxel_size, resolution: float, edge_shells: float = 3.0) -> np.ndarray:
    """Low-pass at ``resolution`` Angstrom with a raised-cosine edge ``edge_shells`` Fourier shells wide."""
    shape = np.shape(data)
    vx, vy, vz = (voxel_size,) * 3 if np.isscalar(voxel_size) else voxel_size
    width = edge_shells / max(shape[2] * vx, shape[1] * vy, shape[0] * vz)
    return _apply_filter(data, voxel_size, lambda s: _cosine_edge(s, resolution, width))


@dataclass(frozen=True)
class SharpenResult:
    data: np.ndarray
    fit: GuinierFit
    resolution: float


def auto_sharpen(data: np.ndarray, voxel_size, resolution: float, low_res: float = 10.0,
                 edge_shells: float = 3.0) -> SharpenResult:
    """Global automatic sharpening: fit B between ``low_res`` and ``resolution``, apply -B, low-pass at ``resolution``.

    Returns:
        :class:`SharpenResult` with the sharpened float32 map, the Guinier fit (``fit.bfactor`` is the fitted B,
        the map was sharpened by its negative) and the resolution used.
    """
    fit = guinier_bfactor(data, voxel_size, high_res=resolution, low_res=low_res)
    shape = np.shape(data)
    vx, vy, vz = (voxel_size,) * 3 if np.isscalar(voxel_size) else voxel_size
    width = edge_shells / max(shape[2] * vx, shape[1] * vy, shape[0] * vz)
    b = fit.bfactor
    out = _apply_filter(data, voxel_size, lambda s: np.exp(b * s * s / 4.0) * _cosine_edge(s, resolution, width))
    return SharpenResult(data=out, fit=fit, resolution=float(resolution))
