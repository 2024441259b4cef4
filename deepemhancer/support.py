"""Beyond the original: keep only output density that the two half maps support (with half maps given).

The network sees the average of the halves, and at low resolution it cannot tell a weak real blob (a micelle, a
flexible domain) from a blob of noise. A kind trained to keep unmodelled density at low resolution (wideTarget)
therefore lets some of the input's low-frequency noise through: on the second simulator, whose noise is mostly
low-frequency, wideTarget's density more than 10 A from the molecule correlated with the input there (CC
0.12-0.49 for the two-convolution wideTarget, 0.38-0.65 for the three-convolution one that replaced it; four maps)
while the two halves did not correlate with each other (CC -0.03): it was the input's own noise, a faint haze over
the solvent.

The halves tell noise from density: their difference is noise only. The *support* is where the halves' average,
low-passed at :data:`SUPPORT_RESOLUTION`, stands above the solvent's mean by :data:`SUPPORT_SD` robust standard
deviations (1.4826 x MAD) of the equally low-passed half difference (the noise of that average). The output is
multiplied by a soft mask: 1 within :data:`KEEP_DISTANCE` of the support, falling to 0 over :data:`EDGE_WIDTH` with
a raised cosine. Real density a user could see at a low contour stands above the noise at 8 A and is kept whole; a
protect mask (:mod:`deepemhancer.protect`) is applied after this and is not damped.

With one map (no half map 2) the noise cannot be told from weak density and nothing is damped. Everything runs at
about 2.5 A per voxel (Nyquist 5 A, finer than the 8 A low-pass): two Fourier crops of the halves, small FFTs, a
distance transform and a linear interpolation back, 3.6 s for a 256^3 box at 1 A on one thread.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .evaluation.retention import lowpass
from .resample import coarse_grid, resample_to_shape

#: low-pass of the support (A): where weak unmodelled density (micelles, flexible domains) stands above the noise
SUPPORT_RESOLUTION = 8.0
#: how far above the solvent level, in robust SD (1.4826 x MAD) of the low-passed half difference, the halves'
#: average must stand
SUPPORT_SD = 3.0
#: output density within this distance of the support is kept whole (A), and the raised-cosine fall from 1 to 0
#: beyond it is as wide. Measured on second-simulator ubiquitin at 3.5-6 A (six pairs, its flexible domain averaged
#: over poses): with 5 + 5 A no voxel of the molecule's own density above 0.3 of its peak lost more than 10 %, and
#: 0.19 % of its density was damped; with 3 + 4 A, 0.3 % of those voxels (up to 23 % at one atom) and 0.67 %
KEEP_DISTANCE = 5.0
EDGE_WIDTH = 5.0
#: working voxel size (A): Nyquist 5 A, finer than the 8 A low-pass
SUPPORT_VOXEL = 2.5


def halfmap_support(half1: np.ndarray, half2: np.ndarray, voxel_size, solvent_level: float) -> np.ndarray | None:
    """Soft mask (0..1, float32, on the halves' ``(z, y, x)`` grid) of where the halves support density (module
    docstring); ``voxel_size`` one number or (x, y, z); ``solvent_level``: the solvent's mean in the halves'
    average (the normalisation's estimate, which finds the solvent even where the molecule fills most of the box).
    None where it cannot be measured (the halves do not differ, or nothing stands above their noise): then nothing
    must be damped, rather than everything."""
    shape = half1.shape
    coarse, coarse_voxel = coarse_grid(shape, voxel_size, SUPPORT_VOXEL)     # coarse_voxel: (z, y, x)
    # resampling is linear: cropping each half first keeps sum and difference off the full grid
    coarse1, coarse2 = resample_to_shape(half1, coarse), resample_to_shape(half2, coarse)
    average = lowpass(0.5 * (coarse1 + coarse2), coarse_voxel[::-1], SUPPORT_RESOLUTION)
    noise = lowpass(0.5 * (coarse1 - coarse2), coarse_voxel[::-1], SUPPORT_RESOLUTION)
    # robust: halves scaled a little differently leave some signal in their difference, inside the molecule only
    noise_sd = 1.4826 * float(np.median(np.abs(noise - np.median(noise)))) or float(noise.std())
    if not noise_sd > 0:
        return None
    supported = average - np.float32(solvent_level) > SUPPORT_SD * noise_sd
    if not supported.any():
        return None
    distance = ndimage.distance_transform_edt(~supported, sampling=coarse_voxel)
    soft = 0.5 * (1 + np.cos(np.pi * np.clip((distance - KEEP_DISTANCE) / EDGE_WIDTH, 0, 1)))
    # linear, not Fourier, interpolation back: the edge spans two coarse voxels, and Fourier-interpolated it rang
    # by 10 % (a mask of 0.906 inside a molecule, measured)
    return np.clip(ndimage.zoom(soft.astype(np.float32), np.asarray(shape) / np.asarray(coarse), order=1,
                                mode="nearest", grid_mode=True), 0.0, 1.0)


def damped_share(output: np.ndarray, support: np.ndarray) -> float:
    """Fraction of the output's positive density that ``support`` removes (for the run's note)."""
    positive = np.clip(output, 0, None)
    total = float(positive.sum())
    return float((positive * (1 - support)).sum()) / total if total > 0 else 0.0
