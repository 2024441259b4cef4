"""Pseudo-experimental half maps and targets from an atomic model.

One call of :func:`simulate_pair` turns a structure into what a user would feed DeepEMhancer (two noisy half maps
at some voxel size) and what we want back (a locally sharpened, masked model map: see :mod:`.targets`). The
recipe, in the order it is applied (every random number is drawn by :func:`draw_params` from one seeded RNG):

1. **Atoms.** Model 1, hydrogens, waters and alternative conformations removed; polymer atoms (protein and nucleic
   acid) make the target, polymer + ligand atoms make the "experimental" signal (ligands are real density the tight
   target does not model).
2. **Orientation and box.** A uniformly random rotation about the centre of mass; a cubic box around the model
   with a margin of 2-6 A (the molecule fills the box, 30 %), 10-30 A (50 %) or 30-50 A (a molecule far smaller
   than its box, 20 %). Models larger than ``max_box`` are cropped to a ``max_box`` cube around a random atom
   (density continues to the box edges, as in a crop of a big map). Voxel size ``v`` drawn in 0.6-1.8 A but never
   coarser than ``d/2.2`` (nobody samples a 2.5 A map at 1.8 A): resampling to the network's 1 A is in the data.
3. **Local resolution.** Every atom gets ``d_i = 0.85 d * (1 + g * (r_i/r95)^2) * (B_i/median B)^0.25 * dom_i *
   flex_i``: ``d`` the chosen global resolution (2.5-7 A), ``r_i`` the distance from the centre of mass (core better
   than periphery, ``g`` in 0.2-0.8), the deposited B-factors (clipped to x0.85-1.25), for 40 % of the maps 2-5
   domains (Voronoi cells around random atoms) each worse by a factor 1-1.6, and for 60 % a flexible extension
   (a 12-30 A sphere around a peripheral atom whose resolution falls smoothly to 8-12 A at its seed). ``d_i`` is
   clipped to 15 A.
4. **Signal.** Electron-scattering density (gemmi ``DensityCalculatorE``, 5-Gaussian electron form factors) with
   per-atom ``B = B_global + 4 (d_i^2 - (0.85 d)^2)``: a global contrast loss ``B_global`` in 50-200 A^2 (higher at
   worse resolution) plus the local blur. For 25 % of the maps, preferred orientation: the Fourier transform is
   multiplied by ``exp(-B_a (s.n)^2 / 4)`` along a random axis ``n`` (``B_a`` 40-300 A^2, so the resolution along
   ``n`` is worse).
4b. **Solvent contrast.** A real map shows the molecule against the ice it displaced, so its low resolutions are
   weaker than a model map's: on the three real maps here the amplitudes at 60-15 A are 0.34-0.78 of the model
   map's (relative to 6-5 A), and no earlier training map had that. For 85 % of the maps the excluded volume (within
   ``r_ex`` 2.2-3.0 A of a polymer or ligand atom), blurred by ``B_global + B_sol`` (``B_sol`` 20-80 A^2), is
   subtracted with a weight that lowers the molecule's mean density by a fraction ``f`` in 0.25-0.7 (the
   ``solvent_fraction``; 0.55 halves the amplitudes at 60-30 A, a third at 20-15 A). The targets stay model maps in
   vacuo (what the evaluation's references are).
5. **Non-protein density** (absent from the tight target, kept at low resolution by the wide one where the input
   still shows it after step 7's depositor mask and zeroed faces): a detergent
   micelle or a thinner lipid belt around a random axis (35 % of maps; 25-60 % of the mean protein density,
   textured, low resolution, excluded from the protein volume) and 0-4 blobs of 2-5 A next to the surface
   (glycans, unmodelled tails, ligands).
6. **Noise.** Independent in the two halves, one of four models (``noise_model``): ``white``; ``coloured``
   (``exp(-B_n s^2/4) (1 + a exp(-(20 s)^2))``, ``B_n`` 0-0.5 B_global, low-frequency excess ``a`` 0-2); ``ctf``
   (the square root of the CTF^2 averaged over 5 defoci of 0.8-2.5 um at 300 kV, times the same envelope, plus a
   low-frequency excess of 1-4: the spectrum of a reconstruction from few particles); ``texture`` (coloured noise
   with an anisotropic spectrum, streaks along a random axis, multiplied by a smooth random field of 0.5-1.5:
   non-stationary solvent as near a membrane or a denoised background). Scaled so that the expected half-map FSC
   over the whole box crosses 0.143 at ``d``; the measured crossing is stored.
7. **Post-processing and box effects.** 15 % of maps arrive already sharpened: both halves multiplied by
   ``exp(+B_s s^2/4)`` (``B_s`` 0.5-1x B_global) and low-passed at ``d`` with a raised-cosine edge, as a
   post-processed map would be. 20 % are multiplied by a depositor-style soft mask (4-8 A around the model, 3-6 A
   cosine edge: exact zeros outside), 15 % get 1-3 faces zeroed over 3-12 voxels (padded boxes).
8. **As inference sees it.** The half maps are averaged, normalised with the engine's own
   ``estimate_noise_stats`` + ``normalize`` on the original grid (noise SD 0.1) and resampled to 1 A with the
   engine's ``to_voxel_size``; targets and masks are made on the same grid and resampled the same way
   (:mod:`.targets`: every modelled atom stays in every target at its local resolution).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import gemmi
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from .. import normalize as norm
from ..errors import InputError
from ..resample import to_voxel_size
from . import targets as tg

#: working voxel size of the network (A)
MODEL_VOXEL = 1.0
#: padding (A) around the box while computing densities, so atoms near the edge spread fully and nothing wraps
_PAD = 10.0


@dataclass
class AtomSet:
    """Atoms of one structure: positions (A, x/y/z), B-factors, occupancies, elements, polymer flags."""

    name: str
    xyz: np.ndarray
    b: np.ndarray
    occ: np.ndarray
    elements: list
    polymer: np.ndarray


def load_atoms(path: str | os.PathLike) -> AtomSet:
    """Read model 1 of a PDB/mmCIF file (gzipped or not) without hydrogens, waters and alternative conformations."""
    try:
        st = gemmi.read_structure(os.fspath(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot read the atomic model ({exc}).") from exc
    st.setup_entities()
    st.remove_hydrogens()
    st.remove_waters()
    st.remove_alternative_conformations()
    xyz, b, occ, el, poly = [], [], [], [], []
    for chain in st[0]:
        for res in chain:
            info = gemmi.find_tabulated_residue(res.name)
            is_poly = res.entity_type == gemmi.EntityType.Polymer or (
                info is not None and (info.is_amino_acid() or info.is_nucleic_acid()) and res.het_flag != "H")
            for atom in res:
                if atom.element.atomic_number <= 1:
                    continue
                xyz.append((atom.pos.x, atom.pos.y, atom.pos.z))
                b.append(atom.b_iso)
                occ.append(atom.occ if atom.occ > 0 else 1.0)
                el.append(atom.element)
                poly.append(is_poly)
    if not any(poly):
        raise InputError(f"{path}: the model has no polymer atoms to make a target from.")
    name = os.path.basename(os.fspath(path)).split(".")[0]
    return AtomSet(name, np.asarray(xyz, float), np.asarray(b, float), np.asarray(occ, float), el,
                   np.asarray(poly, bool))


NOISE_MODELS = ("white", "coloured", "ctf", "texture")


@dataclass
class SimulationParams:
    """Every random choice behind one simulated map (stored with the pair)."""

    seed: int
    resolution: float = 4.0          # half-map FSC=0.143 resolution asked for (A)
    voxel_size: float = 1.0          # voxel of the simulated half maps (A)
    b_global: float = 100.0          # global contrast loss (A^2)
    periphery: float = 0.5           # local resolution worsening towards the periphery
    domains: int = 0                 # >1: Voronoi domains around random atoms, each worse by a factor ...
    domain_spread: float = 0.0       # ... drawn in 1..1+domain_spread
    flexible_factor: float = 1.0     # >1: a flexible region whose resolution is that much worse at its seed
    flexible_radius: float = 18.0
    anisotropy_b: float = 0.0        # preferred orientation: extra B (A^2) along anisotropy_axis
    anisotropy_axis: list = field(default_factory=lambda: [0.0, 0.0, 1.0])
    margin: float = 15.0             # box margin around the model (A)
    micelle: str = "none"            # "none", "micelle" or "belt"
    micelle_level: float = 0.4       # relative to the mean protein density
    n_blobs: int = 0
    noise_model: str = "coloured"    # one of NOISE_MODELS
    noise_b: float = 30.0            # noise colour: B-factor of the noise spectrum (A^2)
    noise_lowfreq: float = 0.5       # low-frequency excess of the noise spectrum
    sharpened_b: float = 0.0         # >0: the halves were sharpened by this B (A^2) and low-passed at resolution
    depositor_mask: bool = False
    zero_faces: int = 0
    solvent_fraction: float = 0.0    # >0: the molecule's mean density lowered by this fraction (displaced ice)
    solvent_radius: float = 2.6      # excluded volume: within this distance (A) of an atom
    solvent_b: float = 50.0          # extra blur (A^2) of the excluded volume's edge, on top of b_global
    rotation: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 1.0])  # quaternion (x, y, z, w)

    def __post_init__(self):
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(f"unknown noise model {self.noise_model!r}; choose one of {', '.join(NOISE_MODELS)}")


#: Fraction of simulated maps with displaced solvent (step 4b), by default.
SOLVENT_SHARE = 0.85

#: version of the wide target's definition, recorded in each pair's summary: 2 keeps only the unmodelled density
#: that the input still shows (version 1 kept a micelle that the depositor's mask or a zeroed face had removed)
WIDE_TARGET_VERSION = 2


def wide_target_outdated(entry: dict) -> bool:
    """Whether a prepared pair's wide target was made by an older definition that differs for this pair (version 1:
    a depositor-masked or zeroed-face input with unmodelled density)."""
    if entry.get("wide_target_version", 1) >= WIDE_TARGET_VERSION:
        return False
    p = entry.get("params", {})   # none in a real pair's entry: never outdated
    unmodelled = p.get("micelle", "none") != "none" or p.get("n_blobs", 0) > 0
    return bool(unmodelled and (p.get("depositor_mask") or p.get("zero_faces", 0)))


def draw_params(rng: np.random.Generator, seed: int, resolution_range=(2.5, 7.0),
                voxel_range=(0.6, 1.8), solvent_share: float = SOLVENT_SHARE) -> SimulationParams:
    """Draw the random recipe of one map (see the module docstring for the distributions); ``solvent_share``: the
    fraction of maps given displaced solvent (step 4b; 0 makes the in-vacuo maps of before that step: the solvent
    draws come last, so every other choice of a seed is the same)."""
    d = float(rng.uniform(*resolution_range))
    vmax = max(voxel_range[0], min(voxel_range[1], d / 2.2))
    u = np.clip((d - 2.5) / 4.5 + rng.normal(0, 0.25), 0, 1)
    b_global = 50 + 150 * float(u)
    micelle = rng.choice(["none", "micelle", "belt"], p=[0.65, 0.25, 0.10])
    margin_kind = rng.choice(3, p=[0.3, 0.5, 0.2])
    margin = float(rng.uniform(*((2, 6), (10, 30), (30, 50))[margin_kind]))
    noise_model = str(rng.choice(NOISE_MODELS, p=[0.15, 0.35, 0.25, 0.25]))
    flex = rng.random() < 0.6
    # the flexible seed reaches 8-12 A: factor relative to the core resolution 0.85 d
    flexible_factor = max(1.0, float(rng.uniform(8, 12)) / (0.85 * d)) if flex else 1.0
    aniso = rng.random() < 0.25
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    domains = int(rng.integers(2, 6)) if rng.random() < 0.4 else 0
    return SimulationParams(
        seed=seed, resolution=round(d, 3), voxel_size=round(float(rng.uniform(voxel_range[0], vmax)), 4),
        b_global=round(b_global, 1), periphery=float(rng.uniform(0.2, 0.8)),
        domains=domains, domain_spread=float(rng.uniform(0.1, 0.6)) if domains else 0.0,
        flexible_factor=round(flexible_factor, 3), flexible_radius=float(rng.uniform(12, 30)),
        anisotropy_b=float(rng.uniform(40, 300)) if aniso else 0.0, anisotropy_axis=[float(a) for a in axis],
        margin=margin, micelle=str(micelle), micelle_level=float(rng.uniform(0.25, 0.6)),
        n_blobs=int(rng.integers(0, 5)), noise_model=noise_model,
        noise_b=float(rng.uniform(0, 0.5)) * b_global,
        noise_lowfreq=float(rng.uniform(1, 4)) if noise_model == "ctf" else float(rng.uniform(0, 2)),
        sharpened_b=float(rng.uniform(0.5, 1.0)) * b_global if rng.random() < 0.15 else 0.0,
        depositor_mask=bool(rng.random() < 0.2), zero_faces=int(rng.integers(1, 4)) if rng.random() < 0.15 else 0,
        rotation=[float(q) for q in Rotation.random(random_state=rng).as_quat()],
        solvent_fraction=float(rng.uniform(0.25, 0.7)) if rng.random() < solvent_share else 0.0,
        solvent_radius=float(rng.uniform(2.2, 3.0)), solvent_b=float(rng.uniform(20, 80)))


def atom_density(xyz: np.ndarray, elements: list, b: np.ndarray, occ: np.ndarray, n: int,
                 voxel: float) -> np.ndarray:
    """Electron-scattering density of atoms on an ``n^3`` box of ``voxel`` A; ``xyz`` in A from voxel [0,0,0].

    Returns a (z, y, x) float32 array. The box is padded while computing so that nothing wraps around.
    """
    pad = int(np.ceil(_PAD / voxel))
    m = n + 2 * pad
    dc = gemmi.DensityCalculatorE()
    dc.grid.set_unit_cell(gemmi.UnitCell(m * voxel, m * voxel, m * voxel, 90, 90, 90))
    dc.grid.spacegroup = gemmi.SpaceGroup("P1")
    dc.grid.set_size(m, m, m)
    dc.d_min = 2 * voxel
    dc.blur = 0.0
    shift = pad * voxel
    keep = np.all((xyz > -shift + 1) & (xyz < n * voxel + shift - 1), axis=1)
    atom = gemmi.Atom()
    for (x, y, z), el, bi, oi in zip(xyz[keep], np.asarray(elements, dtype=object)[keep], b[keep], occ[keep]):
        atom.pos = gemmi.Position(x + shift, y + shift, z + shift)
        atom.element = el
        atom.b_iso = float(bi)
        atom.occ = float(oi)
        dc.add_atom_density_to_grid(atom)
    arr = np.array(dc.grid, copy=True).transpose(2, 1, 0)
    return np.ascontiguousarray(arr[pad:pad + n, pad:pad + n, pad:pad + n], dtype=np.float32)


def radial_frequency(n: int, voxel: float) -> np.ndarray:
    """|s| (1/A) of the rfftn coefficients of an ``n^3`` box."""
    f = np.fft.fftfreq(n, d=voxel)
    fr = np.fft.rfftfreq(n, d=voxel)
    return np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + fr[None, None, :] ** 2)


def frequency_components(n: int, voxel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s_x, s_y, s_z) in 1/A of the rfftn coefficients of an ``n^3`` (z, y, x) box, broadcastable."""
    f = np.fft.fftfreq(n, d=voxel)
    fr = np.fft.rfftfreq(n, d=voxel)
    return fr[None, None, :], f[None, :, None], f[:, None, None]


def _directional(n: int, voxel: float, axis) -> np.ndarray:
    """``(s . axis)^2`` of the rfftn coefficients; ``axis`` is a unit (x, y, z) vector."""
    sx, sy, sz = frequency_components(n, voxel)
    ax = np.asarray(axis, float) / max(np.linalg.norm(axis), 1e-9)
    return (sx * ax[0] + sy * ax[1] + sz * ax[2]) ** 2


def fourier_filter(data: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Multiply the rfftn of a cubic map by ``weights`` (same float32 grid back)."""
    return np.fft.irfftn(np.fft.rfftn(data) * weights, s=data.shape, axes=(0, 1, 2)).astype(np.float32)


#: electron wavelength at 300 kV (A), spherical aberration (A) and amplitude contrast of the ``ctf`` noise model
_WAVELENGTH, _CS, _AMPLITUDE_CONTRAST = 0.0197, 2.7e7, 0.07


def noise_colour(params: SimulationParams, n: int, voxel: float, rng: np.random.Generator) -> np.ndarray:
    """Amplitude spectrum (rfftn grid) of the half-map noise for ``params.noise_model`` (see the module docstring)."""
    s = radial_frequency(n, voxel)
    envelope = np.exp(-params.noise_b * s ** 2 / 4)
    lowfreq = 1 + params.noise_lowfreq * np.exp(-(20 * s) ** 2)
    if params.noise_model == "white":
        return np.ones_like(s)
    if params.noise_model == "ctf":
        power = np.zeros_like(s)
        for defocus in rng.uniform(0.8e4, 2.5e4, size=5):
            chi = np.pi * _WAVELENGTH * defocus * s ** 2 - 0.5 * np.pi * _CS * _WAVELENGTH ** 3 * s ** 4
            power += (np.sqrt(1 - _AMPLITUDE_CONTRAST ** 2) * np.sin(chi) + _AMPLITUDE_CONTRAST * np.cos(chi)) ** 2
        return np.sqrt(power / 5) * envelope + params.noise_lowfreq * np.exp(-(20 * s) ** 2)
    colour = envelope * lowfreq
    if params.noise_model == "texture":
        axis = rng.normal(size=3)
        colour = colour * (1 + rng.uniform(1, 4) * _directional(n, voxel, axis) / np.maximum(s ** 2, 1e-12))
    return colour


def _texture_field(n: int, voxel: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth positive field of 0.5-1.5 (correlation length ~10 A) modulating ``texture`` noise."""
    field_ = ndimage.gaussian_filter(rng.normal(size=(n, n, n)).astype(np.float32), 10.0 / voxel, mode="wrap")
    field_ /= np.abs(field_).max() + 1e-9
    return (1 + 0.5 * field_).astype(np.float32)


def fsc(a: np.ndarray, b: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two cubic maps: (shell frequencies 1/A, FSC)."""
    n = a.shape[0]
    fa, fb = np.fft.rfftn(a), np.fft.rfftn(b)
    shell = np.rint(radial_frequency(n, voxel) * n * voxel).astype(int).ravel()
    nsh = n // 2 + 1
    num = np.bincount(shell, (fa * np.conj(fb)).real.ravel(), minlength=nsh)[:nsh]
    da = np.bincount(shell, (np.abs(fa) ** 2).ravel(), minlength=nsh)[:nsh]
    db = np.bincount(shell, (np.abs(fb) ** 2).ravel(), minlength=nsh)[:nsh]
    return np.arange(nsh) / (n * voxel), num / np.sqrt(np.maximum(da * db, 1e-30))


def fsc_resolution(freq: np.ndarray, curve: np.ndarray, threshold: float = 0.143) -> float:
    """Resolution (A) where the FSC first falls below ``threshold`` (Nyquist if never)."""
    below = np.nonzero(curve[1:] < threshold)[0]
    if below.size == 0:
        return float(1 / freq[-1])
    i = below[0] + 1
    # linear interpolation between shells i-1 and i
    f0, f1, c0, c1 = freq[i - 1], freq[i], curve[i - 1], curve[i]
    s = f0 + (f1 - f0) * (c0 - threshold) / (c0 - c1) if c0 != c1 else f1
    return float(1 / max(s, 1e-6))


def _noise_scale(signal: np.ndarray, colour: np.ndarray, n: int, v: float, resolution: float) -> float:
    """Noise amplitude for which the expected half-map FSC, shell by shell ``S/(S + a^2 N)``, first falls below
    0.143 at ``resolution`` (bisection on ``log a``; using the whole curve makes it robust to shell-to-shell
    oscillations of a small protein's spectrum)."""
    shell = np.rint(radial_frequency(n, v) * n * v).astype(int).ravel()
    nsh = n // 2 + 1
    count = np.maximum(np.bincount(shell, minlength=nsh)[:nsh], 1)
    sig = np.bincount(shell, (np.abs(np.fft.rfftn(signal)) ** 2).ravel(), minlength=nsh)[:nsh] / count
    noi = np.bincount(shell, (colour ** 2).ravel(), minlength=nsh)[:nsh] / count * n ** 3
    freq = np.arange(nsh) / (n * v)
    lo, hi = -12.0, 12.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        res = fsc_resolution(freq, sig / (sig + np.exp(2 * mid) * noi))
        lo, hi = (mid, hi) if res < resolution else (lo, mid)
    return float(np.exp(0.5 * (lo + hi)))


def excluded_volume_density(signal: np.ndarray, xyz_voxels: np.ndarray, voxel: float,
                            params: SimulationParams) -> np.ndarray:
    """The density of the ice the molecule displaced (step 4b), to subtract from its in-vacuo ``signal``: the volume
    within ``solvent_radius`` of the atoms (x, y, z in voxels), blurred by ``b_global + solvent_b``, weighted so that
    the molecule's mean density in that volume drops by ``solvent_fraction``."""
    inside = tg.atom_distance_map(xyz_voxels, signal.shape, voxel) <= params.solvent_radius
    if not inside.any():
        return np.zeros_like(signal)
    s = radial_frequency(signal.shape[0], voxel)
    volume = fourier_filter(inside.astype(np.float32), np.exp(-(params.b_global + params.solvent_b) * s ** 2 / 4))
    weight = params.solvent_fraction * float(signal[inside].mean()) / max(float(volume[inside].mean()), 1e-6)
    return (np.float32(weight) * volume).astype(np.float32)


def _smoothstep(x: np.ndarray, width: float) -> np.ndarray:
    return 0.5 * (1 + np.tanh(x / max(width, 1e-6)))


def _micelle(shape, voxel, centre, atoms_xyz, protein, p: SimulationParams, rng, level):
    """A detergent micelle (thick) or lipid belt (thin) around a random axis through ``centre``."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    n = shape[0]
    c = (np.arange(n) + 0.0) * voxel
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    rel = np.stack([x - centre[0], y - centre[1], z - centre[2]], axis=-1)
    h = rel @ axis
    rho = np.sqrt(np.maximum((rel ** 2).sum(-1) - h ** 2, 0))
    ah = (atoms_xyz - centre) @ axis
    arho = np.sqrt(np.maximum(((atoms_xyz - centre) ** 2).sum(-1) - ah ** 2, 0))
    half_height = rng.uniform(12, 22) if p.micelle == "micelle" else rng.uniform(10, 16)
    in_slab = np.abs(ah) < half_height
    r_prot = np.percentile(arho[in_slab], 90) if in_slab.sum() > 10 else np.percentile(arho, 50)
    r_out = r_prot + (rng.uniform(10, 25) if p.micelle == "micelle" else rng.uniform(8, 14))
    r_in = 0.0 if p.micelle == "micelle" else r_out - rng.uniform(6, 10)
    shell = _smoothstep(r_out - rho, 3.0) * _smoothstep(rho - r_in, 3.0) * _smoothstep(half_height - np.abs(h), 3.0)
    texture = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), 3.0 / voxel)
    texture /= texture.std() + 1e-9
    blob = shell * (1 + 0.3 * texture) * (1 - protein)
    blob = ndimage.gaussian_filter(blob.astype(np.float32), 2.0 / voxel)
    return (level * p.micelle_level * blob).astype(np.float32)


def _blobs(shape, voxel, distance, p: SimulationParams, rng, level):
    """Gaussian blobs of non-protein density near the model surface (4-10 A from the nearest atom)."""
    out = np.zeros(shape, dtype=np.float32)
    candidates = np.argwhere((distance > 4) & (distance < 10))
    if candidates.size == 0:
        return out
    spikes = np.zeros(shape, dtype=np.float32)
    for _ in range(p.n_blobs):
        k, j, i = candidates[rng.integers(len(candidates))]
        spikes[:] = 0
        spikes[k, j, i] = 1
        sigma = rng.uniform(2, 5) / voxel
        g = ndimage.gaussian_filter(spikes, sigma)
        out += level * rng.uniform(0.3, 1.0) * g / g.max()
    return out


@dataclass
class SimulatedPair:
    """One training pair. Arrays ending in ``_1a`` are on the 1 A model grid; the half maps are at ``voxel_size``."""

    name: str
    params: SimulationParams
    half1: np.ndarray
    half2: np.ndarray
    groundtruth: np.ndarray          # target density T (unmasked) at voxel_size, scaled like the tight target
    envelope: np.ndarray             # tight soft mask at voxel_size
    input_1a: np.ndarray             # normalised half-map average at 1 A (what the network sees)
    targets_1a: dict                 # {"tight": ..., "wide": ..., "sharp": ...} (see targets.make_targets)
    masks_1a: dict                   # {"tight": ..., "wide": ...}
    nonprotein_1a: np.ndarray        # micelle/blob density at 1 A (normalised like the input; for tests/analysis)
    noise_stats: tuple               # (mean, std) used to normalise the average
    noise_method: str
    fsc_resolution: float            # measured half-map FSC=0.143 crossing (A)
    local_resolution: tuple          # (min, median, max) of the per-atom d_i (A)

    @property
    def voxel_size(self) -> float:
        return self.params.voxel_size

    def summary(self) -> dict:
        return {"name": self.name, "params": asdict(self.params), "shape_1a": list(self.input_1a.shape),
                "half_shape": list(self.half1.shape), "voxel_size": self.voxel_size,
                "fsc_resolution": round(self.fsc_resolution, 3), "noise_stats": list(self.noise_stats),
                "noise_method": self.noise_method,
                "local_resolution": [round(float(v), 3) for v in self.local_resolution],
                "wide_target_version": WIDE_TARGET_VERSION}


def simulate_pair(atoms: AtomSet, params: SimulationParams, *, max_box: float = 112.0,
                  min_box: float = 48.0) -> SimulatedPair:
    """Simulate half maps, normalised 1 A input, targets and masks for one structure (see module docstring)."""
    rng = np.random.default_rng(params.seed)
    v = params.voxel_size
    rot = Rotation.from_quat(params.rotation).as_matrix()
    com = atoms.xyz[atoms.polymer].mean(axis=0)
    xyz = (atoms.xyz - com) @ rot.T

    # --- box ---
    poly = xyz[atoms.polymer]
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    side = max(float((hi - lo).max()) + 2 * params.margin, min_box)
    if side > max_box:
        centre = poly[rng.integers(len(poly))]
        side = max_box
    else:
        centre = (lo + hi) / 2
    n = int(np.ceil(side / v / 2)) * 2
    origin = centre - n * v / 2
    xyz = xyz - origin
    inbox = np.all((xyz > -_PAD) & (xyz < n * v + _PAD), axis=1)
    xyz, b, occ, polymer = xyz[inbox], atoms.b[inbox], atoms.occ[inbox], atoms.polymer[inbox]
    elements = [e for e, k in zip(atoms.elements, inbox) if k]
    if polymer.sum() < 10:
        raise InputError(f"{atoms.name}: fewer than 10 polymer atoms in the box")

    # --- local resolution per atom ---
    pcentre = xyz[polymer].mean(axis=0)
    r = np.linalg.norm(xyz - pcentre, axis=1)
    rn = r / max(np.percentile(r[polymer], 95), 1.0)
    f = 1 + params.periphery * np.clip(rn, 0, 1.3) ** 2
    pb = b[polymer]
    if pb.std() > 1 and np.median(pb) > 0:
        f *= np.clip((np.maximum(b, 1) / np.median(pb)) ** 0.25, 0.85, 1.25)
    if params.domains > 1:
        seeds = xyz[polymer][rng.choice(int(polymer.sum()), size=params.domains, replace=False)]
        domain = np.argmin(((xyz[:, None, :] - seeds[None]) ** 2).sum(-1), axis=1)
        factors = 1 + params.domain_spread * rng.random(params.domains)
        factors[rng.integers(params.domains)] = 1.0   # one domain keeps the map's best resolution
        f *= factors[domain]
    if params.flexible_factor > 1:
        peripheral = np.nonzero(polymer & (rn > 0.6))[0]
        if peripheral.size:
            seed_atom = xyz[peripheral[rng.integers(peripheral.size)]]
            dist = np.linalg.norm(xyz - seed_atom, axis=1)
            f *= 1 + (params.flexible_factor - 1) * np.clip(1 - dist / params.flexible_radius, 0, 1)
    d_core = 0.85 * params.resolution
    d_local = np.clip(d_core * f, d_core, 15.0)
    b_in = params.b_global + 4 * (d_local ** 2 - d_core ** 2)
    b_target = tg.TARGET_B_PER_D2 * d_local ** 2
    b_sharp = tg.SHARP_B_PER_D2 * d_local ** 2

    # --- densities at the half-map voxel size ---
    signal = atom_density(xyz, elements, b_in, occ, n, v)
    pel = [e for e, k in zip(elements, polymer) if k]
    truth = atom_density(xyz[polymer], pel, b_target[polymer], occ[polymer], n, v)
    truth_sharp = atom_density(xyz[polymer], pel, b_sharp[polymer], occ[polymer], n, v)
    distance = tg.atom_distance_map(xyz[polymer] / v, (n, n, n), v)
    masks = tg.envelope_masks(xyz[polymer] / v, (n, n, n), v, d_local[polymer])
    if params.solvent_fraction > 0:
        signal = signal - excluded_volume_density(signal, xyz / v, v, params)
    level = float(signal[masks["tight"] > 0.5].mean())

    nonprotein = np.zeros_like(signal)
    if params.micelle != "none":
        nonprotein += _micelle(signal.shape, v, pcentre, xyz[polymer], masks["tight"], params, rng, level)
    if params.n_blobs:
        nonprotein += _blobs(signal.shape, v, distance, params, rng, level)
    signal = signal + nonprotein
    if params.anisotropy_b > 0:
        # preferred orientation: the data lack resolution along one axis; the targets keep half of that loss, so
        # the network is not asked to invent what no view recorded
        along = _directional(n, v, params.anisotropy_axis)
        signal = fourier_filter(signal, np.exp(-params.anisotropy_b * along / 4))
        half_loss = np.exp(-params.anisotropy_b * along / 8)
        truth, truth_sharp = fourier_filter(truth, half_loss), fourier_filter(truth_sharp, half_loss)

    # --- noise of the chosen model, scaled so the half-map FSC crosses 0.143 at the chosen resolution ---
    colour = noise_colour(params, n, v, rng)
    alpha = _noise_scale(signal, colour, n, v, params.resolution)
    modulation = _texture_field(n, v, rng) if params.noise_model == "texture" else None
    halves = []
    for _ in range(2):
        noise = fourier_filter(rng.normal(size=(n, n, n)).astype(np.float32), colour)
        if modulation is not None:
            noise *= modulation
        halves.append(signal + np.float32(alpha) * noise)
    freq, curve = fsc(halves[0], halves[1], v)
    measured = fsc_resolution(freq, curve)

    # --- post-processing and box effects ---
    if params.sharpened_b > 0:
        s = radial_frequency(n, v)
        edge = np.clip((s * params.resolution - 0.95) / 0.15, 0, 1)
        weights = np.exp(params.sharpened_b * s ** 2 / 4) * 0.5 * (1 + np.cos(np.pi * edge))
        halves = [fourier_filter(h, weights) for h in halves]

    # what of the unmodelled density the input still shows: the wide target keeps only that (a micelle the
    # depositor masked away, or one in a zeroed face, cannot be inferred from the input; keeping it would teach
    # the network to invent density)
    shown = np.ones_like(nonprotein)
    if params.depositor_mask:
        dep = tg.soft_mask(distance, rng.uniform(4, 8), rng.uniform(3, 6))
        halves = [h * dep for h in halves]
        shown *= dep
    if params.zero_faces:
        for axis_face in rng.choice(6, size=params.zero_faces, replace=False):
            axis, end = divmod(int(axis_face), 2)
            k = int(rng.integers(3, 13))
            sl = [slice(None)] * 3
            sl[axis] = slice(n - k, n) if end else slice(0, k)
            for h in (*halves, shown):
                h[tuple(sl)] = 0.0

    # --- what inference does: average, normalise on the original grid, resample to 1 A ---
    average = 0.5 * (halves[0] + halves[1])
    try:
        stats = norm.estimate_noise_stats(average, voxel_size=v)
        method = "auto"
    except InputError:
        # the user would pass --noiseStats here: the half-difference has the noise SD of the average
        diff = 0.5 * (halves[0] - halves[1])
        stats = norm.NoiseStats(mean=0.0, std=float(diff[diff != 0].std()))
        method = "given"
    x = norm.normalize(average, stats)
    input_1a = to_voxel_size(x, v, MODEL_VOXEL)
    nonprotein_1a = to_voxel_size(nonprotein / np.float32(10 * stats.std), v, MODEL_VOXEL)
    masks_1a = {k: np.clip(to_voxel_size(m, v, MODEL_VOXEL), 0, 1) for k, m in masks.items()}
    # unmodelled density (micelle, blobs) that the input shows stays in the wide target at low resolution, on the
    # same scale
    unmodelled = ndimage.gaussian_filter(nonprotein * shown, tg.UNMODELLED_BLUR / v)
    targets_1a = tg.make_targets(to_voxel_size(truth, v, MODEL_VOXEL), to_voxel_size(truth_sharp, v, MODEL_VOXEL),
                                 masks_1a, to_voxel_size(unmodelled, v, MODEL_VOXEL))
    scale = tg.target_scale(truth, masks["tight"])
    return SimulatedPair(
        name=atoms.name, params=params, half1=halves[0].astype(np.float32), half2=halves[1].astype(np.float32),
        groundtruth=(np.clip(truth, 0, None) / scale).astype(np.float32), envelope=masks["tight"],
        input_1a=input_1a, targets_1a=targets_1a, masks_1a=masks_1a, nonprotein_1a=nonprotein_1a,
        noise_stats=(float(stats.mean), float(stats.std)), noise_method=method, fsc_resolution=measured,
        local_resolution=(float(d_local[polymer].min()), float(np.median(d_local[polymer])),
                          float(d_local[polymer].max())))
