"""Agreement between maps: Fourier shell correlation, resolution, real-space correlation and soft masks.

Everything works on ``(z, y, x)`` arrays with the voxel size given along ``(x, y, z)`` (as in
:class:`deepemhancer.io.MapGrid`), so boxes need not be cubic nor voxels isotropic: the spatial frequency of
every Fourier coefficient is computed from its own axis lengths, and shells are a fixed width in 1/Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["FSCCurve", "frequency_magnitude", "fsc", "halfmap_fsc", "halfmap_resolution", "resolution_at",
           "pearson_cc", "local_cc", "gaussian_blur", "soft_edge", "threshold_mask", "model_envelope_mask",
           "shell_average"]


def _voxel_xyz(voxel_size) -> tuple[float, float, float]:
    if np.isscalar(voxel_size):
        return (float(voxel_size),) * 3
    vx, vy, vz = (float(v) for v in voxel_size)
    return vx, vy, vz


def frequency_magnitude(shape: tuple[int, int, int], voxel_size, real: bool = True) -> np.ndarray:
    """|s| in 1/Angstrom of each coefficient of ``rfftn`` (``real``) or ``fftn`` of a ``(z, y, x)`` array."""
    nz, ny, nx = shape
    vx, vy, vz = _voxel_xyz(voxel_size)
    fz = np.fft.fftfreq(nz, d=vz)[:, None, None]
    fy = np.fft.fftfreq(ny, d=vy)[None, :, None]
    fx = (np.fft.rfftfreq(nx, d=vx) if real else np.fft.fftfreq(nx, d=vx))[None, None, :]
    return np.sqrt(fz * fz + fy * fy + fx * fx)


def _hermitian_weights(nx: int) -> np.ndarray:
    """How many full-spectrum coefficients each ``rfftn`` column stands for (sums then equal full-FFT sums)."""
    w = np.full(nx // 2 + 1, 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    return w


def _shells(shape, voxel_size):
    """Shell index of each rfft coefficient, the shell width (1/A) and the number of shells up to Nyquist.

    The shell width is one Fourier pixel of the longest box edge; shells stop at the lowest Nyquist frequency of
    the three axes (the largest sphere fully sampled by a non-cubic box).
    """
    nz, ny, nx = shape
    vx, vy, vz = _voxel_xyz(voxel_size)
    width = 1.0 / max(nx * vx, ny * vy, nz * vz)
    s_max = min(0.5 / vx, 0.5 / vy, 0.5 / vz)
    n_shells = int(np.floor(s_max / width)) + 1
    index = np.rint(frequency_magnitude(shape, voxel_size) / width).astype(np.int64)
    return index, width, n_shells


@dataclass(frozen=True)
class FSCCurve:
    """An FSC curve: ``frequency[i]`` (1/A, shell centres), ``fsc[i]`` and ``n_coefficients[i]`` per shell."""

    frequency: np.ndarray
    fsc: np.ndarray
    n_coefficients: np.ndarray

    @property
    def resolution(self) -> np.ndarray:
        """Shell resolution in Angstrom (inf for the DC shell)."""
        with np.errstate(divide="ignore"):
            return 1.0 / self.frequency

    def resolution_at(self, threshold: float) -> float:
        return resolution_at(self, threshold)


def _masked(data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    data = np.asarray(data, dtype=np.float64)
    if mask is None:
        return data
    mask = np.asarray(mask, dtype=np.float64)
    if mask.shape != data.shape:
        raise ValueError(f"mask shape {mask.shape} differs from map shape {data.shape}")
    return data * mask


def fsc(map1: np.ndarray, map2: np.ndarray, voxel_size, mask: np.ndarray | None = None) -> FSCCurve:
    """Fourier shell correlation between two maps on the same grid.

    Args:
        map1, map2: ``(z, y, x)`` arrays of equal shape (any box, cubic or not).
        voxel_size: Angstrom, a scalar or ``(x, y, z)``.
        mask: optional soft mask in [0, 1] applied to both maps before the transform.

    Returns:
        :class:`FSCCurve` from the DC shell up to the Nyquist frequency of the coarsest axis.
    """
    if np.shape(map1) != np.shape(map2):
        raise ValueError(f"maps differ in shape: {np.shape(map1)} vs {np.shape(map2)}")
    shape = np.shape(map1)
    f1 = np.fft.rfftn(_masked(map1, mask))
    f2 = np.fft.rfftn(_masked(map2, mask))
    index, width, n_shells = _shells(shape, voxel_size)
    weights = np.broadcast_to(_hermitian_weights(shape[2])[None, None, :], index.shape)
    keep = index < n_shells
    idx = index[keep]
    w = weights[keep]
    cross = np.bincount(idx, weights=w * (f1 * np.conj(f2)).real[keep], minlength=n_shells)
    p1 = np.bincount(idx, weights=w * (np.abs(f1) ** 2)[keep], minlength=n_shells)
    p2 = np.bincount(idx, weights=w * (np.abs(f2) ** 2)[keep], minlength=n_shells)
    count = np.bincount(idx, weights=w, minlength=n_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = cross / np.sqrt(p1 * p2)
    curve = np.where(np.isfinite(curve), curve, 0.0)
    return FSCCurve(frequency=np.arange(n_shells) * width, fsc=curve, n_coefficients=count)


def halfmap_fsc(half1: np.ndarray, half2: np.ndarray, voxel_size, mask: np.ndarray | None = None,
                full_map: bool = False) -> FSCCurve:
    """FSC between two independent half maps (gold standard).

    ``full_map`` applies the Rosenthal-Henderson correction 2 FSC / (1 + FSC): the FSC two independent full-size
    maps would show. Its square root (C_ref) is the expected FSC of the averaged map against a perfect reference.
    """
    curve = fsc(half1, half2, voxel_size, mask)
    if not full_map:
        return curve
    c = np.clip(curve.fsc, -0.999, None)
    return FSCCurve(curve.frequency, 2.0 * c / (1.0 + c), curve.n_coefficients)


def halfmap_resolution(half1: np.ndarray, half2: np.ndarray, voxel_size, threshold: float = 0.143,
                       max_box: int = 160) -> float:
    """Resolution (A) where the FSC of two half maps falls below ``threshold``, from their central box.

    A quick, memory-bounded estimate: at most ``max_box`` voxels per axis around the centre (where the molecule
    usually is), unmasked, so the solvent noise makes it conservative (a little worse than a masked FSC).
    """
    starts = [max(0, (n - max_box) // 2) for n in np.shape(half1)]
    box = tuple(slice(s, s + max_box) for s in starts)
    return resolution_at(fsc(half1[box], half2[box], voxel_size), threshold)


def resolution_at(curve: FSCCurve, threshold: float) -> float:
    """Resolution (Angstrom) where the FSC first falls below ``threshold``, interpolated between shells.

    The DC shell is skipped. If the curve never falls below the threshold, the Nyquist resolution of the last
    shell is returned (the best the grid can tell).
    """
    f, c = curve.frequency, curve.fsc
    for i in range(1, len(c)):
        if c[i] < threshold:
            if i == 1:
                return float(1.0 / f[1])
            # linear interpolation in frequency between the last shell above and the first below
            t = (c[i - 1] - threshold) / (c[i - 1] - c[i])
            s = f[i - 1] + t * (f[i] - f[i - 1])
            return float(1.0 / s)
    return float(1.0 / f[-1])


def shell_average(data: np.ndarray, voxel_size) -> tuple[np.ndarray, np.ndarray]:
    """Rotationally averaged amplitude ``sqrt(<|F|^2>)`` per shell: ``(frequency 1/A, amplitude)``."""
    f = np.fft.rfftn(np.asarray(data, dtype=np.float64))
    index, width, n_shells = _shells(np.shape(data), voxel_size)
    weights = np.broadcast_to(_hermitian_weights(np.shape(data)[2])[None, None, :], index.shape)
    keep = index < n_shells
    power = np.bincount(index[keep], weights=weights[keep] * (np.abs(f) ** 2)[keep], minlength=n_shells)
    count = np.bincount(index[keep], weights=weights[keep], minlength=n_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.sqrt(power / count)
    return np.arange(n_shells) * width, np.where(np.isfinite(amp), amp, 0.0)


def pearson_cc(map1: np.ndarray, map2: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two maps, over the whole box or weighted by a (soft or binary) mask."""
    a = np.asarray(map1, dtype=np.float64).ravel()
    b = np.asarray(map2, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {np.shape(map1)} vs {np.shape(map2)}")
    w = np.ones_like(a) if mask is None else np.asarray(mask, dtype=np.float64).ravel()
    total = w.sum()
    if total <= 0:
        raise ValueError("the mask is empty")
    ma, mb = (w * a).sum() / total, (w * b).sum() / total
    da, db = a - ma, b - mb
    denom = np.sqrt((w * da * da).sum() * (w * db * db).sum())
    return float((w * da * db).sum() / denom) if denom > 0 else 0.0


def gaussian_blur(data: np.ndarray, sigma_angstrom: float, voxel_size) -> np.ndarray:
    """Real-space Gaussian blur with a standard deviation in Angstrom (per-axis voxel sizes respected)."""
    vx, vy, vz = _voxel_xyz(voxel_size)
    sigma = (sigma_angstrom / vz, sigma_angstrom / vy, sigma_angstrom / vx)
    return ndimage.gaussian_filter(np.asarray(data, dtype=np.float64), sigma, mode="constant")


def local_cc(map1: np.ndarray, map2: np.ndarray, voxel_size, window_angstrom: float = 10.0) -> np.ndarray:
    """Local agreement map: Pearson CC in a sliding Gaussian window (sigma = window / 2.355, FWHM = window).

    Cheap (five Gaussian filters); flat regions of either map give CC 0.
    """
    a = np.asarray(map1, dtype=np.float64)
    b = np.asarray(map2, dtype=np.float64)
    sigma = window_angstrom / 2.355
    ma, mb = gaussian_blur(a, sigma, voxel_size), gaussian_blur(b, sigma, voxel_size)
    vab = gaussian_blur(a * b, sigma, voxel_size) - ma * mb
    va = gaussian_blur(a * a, sigma, voxel_size) - ma * ma
    vb = gaussian_blur(b * b, sigma, voxel_size) - mb * mb
    denom = np.sqrt(np.clip(va, 0, None) * np.clip(vb, 0, None))
    tiny = 1e-12 * max(float(denom.max()), 1e-300)
    out = np.where(denom > tiny, vab / np.maximum(denom, tiny), 0.0)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def soft_edge(binary: np.ndarray, voxel_size, extend_angstrom: float = 0.0,
              edge_angstrom: float = 6.0) -> np.ndarray:
    """Dilate a binary mask by ``extend_angstrom`` and add a raised-cosine edge ``edge_angstrom`` wide.

    Distances are Euclidean in Angstrom (per-axis voxel sizes respected), as RELION's mask_create does in pixels.
    """
    binary = np.asarray(binary, dtype=bool)
    if not binary.any():
        return np.zeros(binary.shape, dtype=np.float32)
    vx, vy, vz = _voxel_xyz(voxel_size)
    dist = ndimage.distance_transform_edt(~binary, sampling=(vz, vy, vx))
    out = np.zeros(binary.shape, dtype=np.float64)
    out[dist <= extend_angstrom] = 1.0
    if edge_angstrom > 0:
        ramp = (dist > extend_angstrom) & (dist < extend_angstrom + edge_angstrom)
        out[ramp] = 0.5 + 0.5 * np.cos(np.pi * (dist[ramp] - extend_angstrom) / edge_angstrom)
    return out.astype(np.float32)


def threshold_mask(data: np.ndarray, threshold: float, voxel_size, extend_angstrom: float = 3.0,
                   edge_angstrom: float = 6.0) -> np.ndarray:
    """Soft mask of the voxels above ``threshold``, extended and with a cosine edge."""
    return soft_edge(np.asarray(data) > threshold, voxel_size, extend_angstrom, edge_angstrom)


def model_envelope_mask(model_map: np.ndarray, voxel_size, fraction: float = 0.05,
                        extend_angstrom: float = 2.0, edge_angstrom: float = 4.0) -> np.ndarray:
    """Soft model envelope: model map above ``fraction`` of its maximum, dilated, cosine edge."""
    model_map = np.asarray(model_map)
    return threshold_mask(model_map, fraction * float(model_map.max()), voxel_size, extend_angstrom, edge_angstrom)
