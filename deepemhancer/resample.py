"""Stage 3: resample a map to the model's working voxel size and back.

Resampling is done in Fourier space (crop or zero-pad the centred spectrum): it is exact for band-limited maps,
which cryo-EM maps are, it anti-aliases perfectly when going down (everything beyond the new Nyquist frequency is
removed, nothing folds back), and going up then down returns the input exactly. Voxel ``[0, 0, 0]`` keeps its
position, so the origin in Angstrom never changes. Each axis is treated on its own, so non-cubic boxes and
anisotropic voxels work.

As in the original, the new size along an axis is ``round(n * voxel_in / voxel_out)``; the effective working voxel
is then ``n * voxel_in / new_n`` (within half a voxel over the box of the requested size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import fft


def shape_for_voxel_size(shape: Sequence[int], voxel_in: Sequence[float] | float,
                         voxel_out: float) -> tuple[int, ...]:
    """Array shape after resampling ``shape`` (voxel sizes in (z, y, x) order, or one number) to ``voxel_out``."""
    voxels = np.broadcast_to(np.asarray(voxel_in, dtype=float), (len(shape),))
    return tuple(max(1, int(round(n * v / voxel_out))) for n, v in zip(shape, voxels))


def coarse_grid(shape: Sequence[int], voxel_size, finest: float) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and effective (z, y, x) voxel size of ``shape`` (``voxel_size`` one number or (x, y, z)) resampled to
    ``finest`` A per voxel, or to its own coarsest voxel if that is coarser: where the checks that need no fine
    detail (erased density, the half maps' support) run."""
    voxel_zyx = np.broadcast_to(np.asarray(voxel_size, float), (3,))[::-1]
    coarse = shape_for_voxel_size(shape, voxel_zyx, max(finest, float(voxel_zyx.max())))
    return coarse, np.asarray(shape) * voxel_zyx / np.asarray(coarse)


def _resize_axis(spectrum: np.ndarray, axis: int, n_in: int, n_out: int) -> np.ndarray:
    """Crop or zero-pad one full-complex (fftshift-free) axis of a spectrum from n_in to n_out samples."""
    if n_out == n_in:
        return spectrum
    keep = min(n_in, n_out)
    pos = (keep + 1) // 2  # frequencies 0..pos-1
    neg = keep // 2        # frequencies -neg..-1
    shape = list(spectrum.shape)
    shape[axis] = n_out
    out = np.zeros(shape, dtype=spectrum.dtype)
    src = [slice(None)] * spectrum.ndim
    dst = [slice(None)] * spectrum.ndim
    src[axis], dst[axis] = slice(0, pos), slice(0, pos)
    out[tuple(dst)] = spectrum[tuple(src)]
    if neg:
        src[axis], dst[axis] = slice(n_in - neg, n_in), slice(n_out - neg, n_out)
        out[tuple(dst)] = spectrum[tuple(src)]
    if keep % 2 == 0:
        # the Nyquist bin of the smaller grid stands for both +f and -f: split it when padding, fold it when
        # cropping, so that padding then cropping gives back the input exactly
        nyq_out = [slice(None)] * spectrum.ndim
        nyq_out[axis] = slice(n_out - neg, n_out - neg + 1)
        if n_out > n_in:
            half = out[tuple(nyq_out)] * 0.5
            out[tuple(nyq_out)] = half
            pos_nyq = [slice(None)] * spectrum.ndim
            pos_nyq[axis] = slice(keep // 2, keep // 2 + 1)
            out[tuple(pos_nyq)] = half
        else:
            pos_in = [slice(None)] * spectrum.ndim
            pos_in[axis] = slice(keep // 2, keep // 2 + 1)
            out[tuple(nyq_out)] += spectrum[tuple(pos_in)]
    return out


def resample_to_shape(data: np.ndarray, shape: Sequence[int], workers: int = -1) -> np.ndarray:
    """Fourier-resample a 3D array to ``shape`` (values are interpolated, not rescaled: a constant stays constant)."""
    shape = tuple(int(n) for n in shape)
    data = np.asarray(data, dtype=np.float32)
    if shape == data.shape:
        return data.copy()
    # the last axis uses the real-to-complex transform; it is resized through the full spectrum of the other axes
    spectrum = fft.fftn(data, workers=workers)
    for axis, (n_in, n_out) in enumerate(zip(data.shape, shape)):
        spectrum = _resize_axis(spectrum, axis, n_in, n_out)
    out = fft.ifftn(spectrum, workers=workers).real
    out *= np.prod(shape) / np.prod(data.shape)
    return out.astype(np.float32)


def to_voxel_size(data: np.ndarray, voxel_in: Sequence[float] | float, voxel_out: float) -> np.ndarray:
    """Resample a ``(z, y, x)`` map whose voxel size is ``voxel_in`` (Angstrom, one number or (z, y, x))."""
    return resample_to_shape(data, shape_for_voxel_size(data.shape, voxel_in, voxel_out))
