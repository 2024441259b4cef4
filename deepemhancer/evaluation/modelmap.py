"""A map computed from an atomic model on exactly the grid of an experimental map.

The model map is gemmi's electron-scattering density (``DensityCalculatorE``: electron form factors, the atomic
B-factors, hydrogens removed), evaluated on the map's own voxels and band-limited to ``d_min`` (2 x voxel by default,
i.e. the Nyquist sphere, or a chosen resolution).

Placement: voxel ``[k, j, i]`` of the map sits at ``origin + (i*vx, j*vy, k*vz)`` (:class:`deepemhancer.io.MapGrid`),
and model coordinates are in that same frame. gemmi computes densities on a periodic unit cell starting at 0, so the
model is shifted by ``-origin`` plus a margin and the cell is the box padded by that margin on each side; the margin
keeps densities of atoms near one face from wrapping onto the opposite face. The padded cell is then cropped back.
"""

from __future__ import annotations

import os

import gemmi
import numpy as np

from ..errors import InputError
from ..io import MapGrid

__all__ = ["read_model", "model_map", "fraction_inside"]

_MARGIN_ANGSTROM = 8.0  # more than the radius at which an atom's density (B up to ~150 A^2) falls below the cutoff


def read_model(path: str | os.PathLike, remove_hydrogens: bool = True) -> gemmi.Structure:
    """Read a PDB/mmCIF model (gzipped or not); first model only, hydrogens removed by default."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such atomic model file.")
    try:
        st = gemmi.read_structure(path)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as a PDB or mmCIF model ({exc}).") from exc
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(f"{path}: the model holds no atoms.")
    while len(st) > 1:
        del st[len(st) - 1]
    if remove_hydrogens:
        st.remove_hydrogens()
    st.remove_empty_chains()
    return st


def _atom_positions(st: gemmi.Structure) -> np.ndarray:
    return np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in st[0] for r in ch for a in r], dtype=np.float64)


def fraction_inside(model: gemmi.Structure | str | os.PathLike, grid: MapGrid) -> float:
    """Fraction of the model's atoms whose position lies inside the map box."""
    st = model if isinstance(model, gemmi.Structure) else read_model(model)
    xyz = _atom_positions(st)
    lo = np.asarray(grid.origin, dtype=np.float64)
    nz, ny, nx = grid.shape
    hi = lo + (np.array([nx, ny, nz]) - 1) * np.asarray(grid.voxel_size, dtype=np.float64)
    inside = np.all((xyz >= lo) & (xyz <= hi), axis=1)
    return float(inside.mean()) if len(xyz) else 0.0


def model_map(model: gemmi.Structure | str | os.PathLike, grid: MapGrid, resolution: float | None = None,
              remove_hydrogens: bool = True) -> np.ndarray:
    """Electron-scattering density of an atomic model on ``grid``.

    Args:
        model: a path or a :class:`gemmi.Structure` (used as given; it is not modified).
        grid: the target grid (shape ``(nz, ny, nx)``, voxel size and origin in Angstrom, orthogonal cell).
        resolution: ``d_min`` in Angstrom; default 2 x the largest voxel size (Nyquist).
        remove_hydrogens: drop H atoms first (cryo-EM maps do not resolve them).

    Returns:
        float32 ``(z, y, x)`` array of ``grid.shape``.
    """
    st = read_model(model, remove_hydrogens) if not isinstance(model, gemmi.Structure) else model.clone()
    if isinstance(model, gemmi.Structure) and remove_hydrogens:
        st.remove_hydrogens()
    if not grid.is_orthogonal:
        raise InputError("model maps need an orthogonal grid (cell angles 90 degrees).")
    vx, vy, vz = (float(v) for v in grid.voxel_size)
    if min(vx, vy, vz) <= 0:
        raise InputError("the map has no voxel size; give one (-s / --angpix).")
    nz, ny, nx = (int(n) for n in grid.shape)
    d_min = float(resolution) if resolution else 2.0 * max(vx, vy, vz)

    pad = [int(np.ceil(_MARGIN_ANGSTROM / v)) for v in (vx, vy, vz)]
    dims = (nx + 2 * pad[0], ny + 2 * pad[1], nz + 2 * pad[2])
    start = np.asarray(grid.origin, dtype=np.float64) - np.array(pad) * np.array([vx, vy, vz])
    box_lo = np.asarray(grid.origin, dtype=np.float64) - _MARGIN_ANGSTROM
    box_hi = np.asarray(grid.origin, dtype=np.float64) + (np.array([nx, ny, nz]) - 1) * [vx, vy, vz] + _MARGIN_ANGSTROM

    # atoms further than the margin from the box cannot reach it; leaving them in would wrap round the cell
    model0 = st[0]
    for chain in model0:
        for res in chain:
            for atom in res:
                p = atom.pos
                if not (box_lo[0] <= p.x <= box_hi[0] and box_lo[1] <= p.y <= box_hi[1]
                        and box_lo[2] <= p.z <= box_hi[2]):
                    atom.occ = 0.0
    model0.transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(*(-start))))

    dc = gemmi.DensityCalculatorE()
    dc.grid.set_unit_cell(gemmi.UnitCell(dims[0] * vx, dims[1] * vy, dims[2] * vz, 90, 90, 90))
    dc.grid.spacegroup = gemmi.SpaceGroup("P 1")
    dc.grid.set_size(*dims)
    dc.d_min = 0.0  # with d_min unset gemmi keeps our grid instead of choosing its own spacing
    dc.set_refmac_compatible_blur(model0)  # extra B that makes the sampled density band-limited (no aliasing)
    dc.initialize_grid()
    dc.add_model_density_to_grid(model0)
    dc.grid.symmetrize_sum()
    dens = np.array(dc.grid, copy=True).transpose(2, 1, 0)  # gemmi (u, v, w) = (x, y, z) -> (z, y, x)

    # remove the blur and band-limit to d_min in reciprocal space, as a structure-factor model map would be
    spec = np.fft.rfftn(dens)
    s = _freq(dens.shape, (vx, vy, vz))
    spec *= np.exp(dc.blur * s * s / 4.0) * (s <= 1.0 / d_min)
    full = np.fft.irfftn(spec, s=dens.shape, axes=(0, 1, 2))
    out = full[pad[2]:pad[2] + nz, pad[1]:pad[1] + ny, pad[0]:pad[0] + nx]
    return np.ascontiguousarray(out, dtype=np.float32)


def _freq(shape, voxel_xyz):
    from .fsc import frequency_magnitude
    return frequency_magnitude(shape, voxel_xyz)
