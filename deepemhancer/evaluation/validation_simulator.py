"""A second, independent simulator of half-map pairs, for validation only (never used for training).

The training data come from :mod:`deepemhancer.training.simulate`; a model judged only on maps from that code can
look better than it is, because it may have learnt that simulator's quirks. This module makes test pairs with
different code and different physical models at every step, so that a gain measured here is a gain on data the
network was not shaped for (a test makes sure :mod:`deepemhancer.training` never imports it):

==========================  ========================================  ===========================================
step                        training simulator                        this simulator
==========================  ========================================  ===========================================
atom density                gemmi 5-Gaussian electron form factors    point atoms weighted by atomic number,
                                                                      trilinear spreading, Fourier Gaussian blur
per-atom blur               radial + domains + one flexible sphere,   a smooth random B field over the molecule
                            from the local resolution                 (10-25 A correlation) on top of the
                                                                      deposited B-factors
flexibility                 blur only                                 conformational heterogeneity: a random
                                                                      domain averaged over 5 small rigid-body
                                                                      rotations (2-6 degrees) about a hinge
signal envelope             B_global from the resolution              exp(-B s^2/4) with B drawn in 60-160 A^2
noise                       Fourier-coloured Gaussian, four models    real-space: white noise convolved with a
                                                                      sum of two Gaussian kernels (0.6-1.2 and
                                                                      1.5-3 A) of random weights
noise level                 FSC over the whole box = 0.143 at d       FSC in a soft mask (6 A + 6 A edge around
                                                                      the atoms, as RELION's) = 0.143 at d
box                         cubic, margin 2-50 A, voxel 0.6-1.8 A     cubic, 1.5-2x the particle (margin >= 8 A,
                                                                      side <= 150 A), voxel 0.8-1.4 A
==========================  ========================================  ===========================================

The reference ("truth") for scoring is the molecule's own density at its deposited B-factors (no envelope, no
heterogeneity), and the envelope is the model's atoms dilated by 3 A with a 3 A edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

ATOMIC_NUMBER = {"C": 6, "N": 7, "O": 8, "S": 16, "P": 15, "SE": 34, "FE": 26, "MG": 12, "ZN": 30, "CA": 20}


@dataclass
class ValidationPair:
    name: str
    half1: np.ndarray
    half2: np.ndarray
    truth: np.ndarray
    envelope: np.ndarray
    voxel_size: float
    resolution: float
    recipe: dict


def read_atoms(path: str):
    """(positions A (n, 3) x/y/z, weights = atomic numbers, B-factors) of model 1 without H and waters."""
    import gemmi
    st = gemmi.read_structure(str(path))
    st.remove_hydrogens()
    st.remove_waters()
    st.remove_alternative_conformations()
    xyz, z, b = [], [], []
    for chain in st[0]:
        for res in chain:
            for atom in res:
                xyz.append(atom.pos.tolist())
                z.append(ATOMIC_NUMBER.get(atom.element.name.upper(), 6))
                b.append(atom.b_iso)
    return np.asarray(xyz, float), np.asarray(z, float), np.asarray(b, float)


def _splat(xyz_vox: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Trilinear spreading of point weights at (x, y, z) voxel positions onto a (z, y, x) grid."""
    grid = np.zeros((n, n, n))
    base = np.floor(xyz_vox).astype(int)
    frac = xyz_vox - base
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = weights * np.abs(1 - dx - frac[:, 0]) * np.abs(1 - dy - frac[:, 1]) * np.abs(1 - dz - frac[:, 2])
                ix, iy, iz = base[:, 0] + dx, base[:, 1] + dy, base[:, 2] + dz
                ok = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n) & (iz >= 0) & (iz < n)
                np.add.at(grid, (iz[ok], iy[ok], ix[ok]), w[ok])
    return grid


def _s2(n: int, voxel: float) -> np.ndarray:
    f = np.fft.fftfreq(n, voxel)
    return f[:, None, None] ** 2 + f[None, :, None] ** 2 + np.fft.rfftfreq(n, voxel)[None, None, :] ** 2


def _density(xyz_vox, weights, bfactors, n, voxel, bins=6) -> np.ndarray:
    """Point atoms blurred by their B-factors: atoms grouped in B bins, each bin blurred in Fourier space."""
    s2 = _s2(n, voxel)
    edges = np.quantile(bfactors, np.linspace(0, 1, bins + 1))
    out = np.zeros((n, n, n))
    for k in range(bins):
        sel = (bfactors >= edges[k]) & ((bfactors < edges[k + 1]) if k < bins - 1 else (bfactors <= edges[k + 1]))
        if not sel.any():
            continue
        b = float(np.median(bfactors[sel])) + 8.0   # + the point atom's own width
        spectrum = np.fft.rfftn(_splat(xyz_vox[sel], weights[sel], n)) * np.exp(-b * s2 / 4)
        out += np.fft.irfftn(spectrum, s=out.shape, axes=(0, 1, 2))
    return out


def _fsc_in_mask(a, b, mask, voxel):
    fa, fb = np.fft.rfftn(a * mask), np.fft.rfftn(b * mask)
    n = a.shape[0]
    shell = np.minimum(np.rint(np.sqrt(_s2(n, voxel)) * n * voxel).astype(int), n // 2).ravel()
    num = np.bincount(shell, (fa * np.conj(fb)).real.ravel())
    den = np.sqrt(np.bincount(shell, (np.abs(fa) ** 2).ravel()) * np.bincount(shell, (np.abs(fb) ** 2).ravel()))
    return np.arange(len(num)) / (n * voxel), num / np.maximum(den, 1e-30)


def _crossing(freq, curve, threshold=0.143):
    below = np.nonzero(curve[1:] < threshold)[0]
    return 1 / freq[below[0] + 1] if below.size else 1 / freq[-1]


def simulate(path: str, seed: int, resolution: float | None = None, voxel: float | None = None) -> ValidationPair:
    """One validation pair from the atomic model at ``path`` (``resolution``, ``voxel`` in A: given, or drawn)."""
    rng = np.random.default_rng(seed)
    xyz, weights, b = read_atoms(path)
    d = float(resolution or rng.uniform(3.0, 6.0))
    drawn_voxel = float(rng.uniform(0.8, min(1.4, d / 2.5)))   # drawn either way: the later draws stay the same
    voxel = float(voxel or drawn_voxel)
    xyz = (xyz - xyz.mean(0)) @ Rotation.random(random_state=rng).as_matrix().T
    size = float(np.ptp(xyz, axis=0).max())
    margin = max(8.0, rng.uniform(0.25, 0.5) * size)     # boxes of 1.5-2x the particle, as usual
    side = min(size + 2 * margin, 150.0)
    n = int(np.ceil(side / voxel / 2) * 2)
    xyz_vox = xyz / voxel + n / 2
    b = np.clip(np.where(b > 0, b, 30.0), 10, 300)

    # a smooth random B field over the molecule on top of the deposited B-factors
    coarse = ndimage.gaussian_filter(rng.standard_normal((n, n, n)), rng.uniform(10, 25) / voxel, mode="wrap")
    coarse /= np.abs(coarse).max() + 1e-12
    idx = np.clip(np.rint(xyz_vox).astype(int), 0, n - 1)
    b_field = b + rng.uniform(20, 80) * (1 + coarse[idx[:, 2], idx[:, 1], idx[:, 0]])

    # conformational heterogeneity: a domain (atoms near a random atom) in 5 rigid-body poses about a hinge
    hinge_atom = xyz_vox[rng.integers(len(xyz_vox))]
    domain = np.linalg.norm(xyz_vox - hinge_atom, axis=1) * voxel < rng.uniform(12, 25)
    hinge = xyz_vox[domain].mean(0) + (xyz_vox.mean(0) - xyz_vox[domain].mean(0)) * 0.5
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    poses = []
    for angle in np.linspace(-1, 1, 5) * np.radians(rng.uniform(2, 6)):
        rot = Rotation.from_rotvec(angle * axis).as_matrix()
        moved = xyz_vox.copy()
        moved[domain] = (xyz_vox[domain] - hinge) @ rot.T + hinge
        poses.append(moved)
    signal = np.mean([_density(p, weights, b_field, n, voxel) for p in poses], axis=0)
    b_env = rng.uniform(60, 160)
    signal = np.fft.irfftn(np.fft.rfftn(signal) * np.exp(-b_env * _s2(n, voxel) / 4), s=signal.shape,
                           axes=(0, 1, 2))
    truth = _density(xyz_vox, weights, b, n, voxel)

    occupied = np.zeros((n, n, n), bool)
    occupied[idx[:, 2], idx[:, 1], idx[:, 0]] = True
    distance = ndimage.distance_transform_edt(~occupied, sampling=voxel)
    envelope = 0.5 * (1 + np.cos(np.pi * np.clip((distance - 3.0) / 3.0, 0, 1)))
    fsc_mask = 0.5 * (1 + np.cos(np.pi * np.clip((distance - 6.0) / 6.0, 0, 1)))   # a RELION-like soft mask

    # real-space correlated noise, scaled so that the FSC inside the molecule's mask crosses 0.143 at d
    widths = (rng.uniform(0.6, 1.2), rng.uniform(1.5, 3.0))
    mix = rng.uniform(0.5, 0.9)

    def noise():
        white = rng.standard_normal((n, n, n))
        parts = [ndimage.gaussian_filter(white, w / voxel, mode="wrap") for w in widths]
        return mix * parts[0] / parts[0].std() + (1 - mix) * parts[1] / parts[1].std()
    noises = [noise(), noise()]
    lo, hi = -8.0, 6.0
    for _ in range(22):
        mid = 0.5 * (lo + hi)
        a = np.exp(mid) * float(signal[envelope > 0.5].std())
        freq, curve = _fsc_in_mask(signal + a * noises[0], signal + a * noises[1], fsc_mask, voxel)
        lo, hi = (mid, hi) if _crossing(freq, curve) < d else (lo, mid)
    a = np.exp(0.5 * (lo + hi)) * float(signal[envelope > 0.5].std())
    halves = [(signal + a * z).astype(np.float32) for z in noises]
    name = str(path).rsplit("/", 1)[-1].split(".")[0]
    recipe = {"resolution": round(d, 3), "voxel": round(voxel, 4), "box": n, "b_envelope": round(b_env, 1),
              "noise_widths": [round(w, 2) for w in widths], "noise_mix": round(mix, 3),
              "flexible_atoms": int(domain.sum()), "seed": seed}
    return ValidationPair(name, halves[0], halves[1], truth.astype(np.float32), envelope.astype(np.float32), voxel,
                          d, recipe)
