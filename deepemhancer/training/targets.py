"""Training targets: what the network is asked to output, and on which scale.

Definitions (all on the same grid as the simulated map; every quantity in Angstrom):

* **Model envelope distance** ``D(x)``: distance from voxel ``x`` to the nearest polymer atom centre (atoms rounded
  to their voxel), computed with an exact Euclidean distance transform.
* **Soft masks** from ``D``: 1 for ``D <= r``, a raised-cosine edge down to 0 at ``D = r + w``.
  ``tight``: r = 3 A, w = 3 A (the model's van der Waals envelope plus a little: what DeepEMhancer's
  "tightTarget" keeps); ``wide``: r = 6 A, w = 6 A (keeps weak peripheral density; the "wideTarget").
* **Target density** ``T``: the electron-scattering density of the polymer atoms only (no waters, no hydrogens,
  no ligands, no micelle/lipids/blobs) with each atom blurred by ``B_t = 2 d_i^2`` where ``d_i`` is the atom's
  local resolution. This is a *locally sharpened, model-based* map in the spirit of LocScale: the amplitudes follow
  the atomic model (no global B-factor fall-off, hence "sharpened"), but detail finer than the local resolution is
  attenuated (at spatial frequency ``1/d_i`` the atom keeps ``exp(-1/2)`` = 61 % of its amplitude, at ``2/d_i``
  only 14 %), so the network is never asked to invent detail the data cannot support.
* **Target** = ``T * mask / p95(T inside mask)``: multiplied by the soft mask (tight or wide) and divided by the
  95th percentile of ``T`` over voxels where the mask is above 0.5, the same fixed scale as the original's
  ``targetNormalizationLocscale`` (background percentile is 0 for a model map). The network's output is therefore
  on a documented scale: protein density peaks around 1, solvent exactly 0.

Why masked model maps: the product's promise is "what LocScale would give you with a perfect model, plus solvent
removal". Everything outside the molecule envelope (noise, detergent, lipids, unmodelled blobs) is 0 in the target,
so the network learns to suppress it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: (full-weight radius, cosine edge width) in Angstrom for each mask kind.
MASK_RADII = {"tight": (3.0, 3.0), "wide": (6.0, 6.0)}
#: Percentile of the target density inside its mask that is scaled to 1.
TARGET_PERCENTILE = 95.0


def atom_distance_map(xyz_voxels: np.ndarray, shape: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """Distance (A) from each voxel to the nearest atom; ``xyz_voxels`` are (x, y, z) positions in voxel units."""
    occupied = np.zeros(shape, dtype=bool)
    idx = np.rint(xyz_voxels[:, ::-1]).astype(int)  # (z, y, x)
    inside = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
    idx = idx[inside]
    occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    if not occupied.any():
        return np.full(shape, np.inf, dtype=np.float32)
    return ndimage.distance_transform_edt(~occupied, sampling=voxel_size).astype(np.float32)


def soft_mask(distance: np.ndarray, radius: float, edge: float) -> np.ndarray:
    """1 inside ``radius``, raised-cosine fall to 0 at ``radius + edge`` (float32)."""
    t = np.clip((distance - radius) / max(edge, 1e-6), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def envelope_masks(distance: np.ndarray) -> dict[str, np.ndarray]:
    """The tight and wide soft masks from the atom-distance map."""
    return {kind: soft_mask(distance, r, w) for kind, (r, w) in MASK_RADII.items()}


def target_scale(density: np.ndarray, mask: np.ndarray) -> float:
    """The number the masked target is divided by: the 95th percentile of the density where ``mask > 0.5``."""
    inside = density[mask > 0.5]
    if inside.size == 0:
        raise ValueError("the target mask is empty")
    scale = float(np.percentile(inside, TARGET_PERCENTILE))
    if scale <= 0:
        raise ValueError("the target density is not positive inside its mask")
    return scale


def make_target(density: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``density * mask / p95(density inside mask)``, float32 (see the module docstring)."""
    return (np.clip(density, 0, None) * mask / target_scale(density, mask)).astype(np.float32)


def normalize_real_target(target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Put a user's target map (e.g. a LocScale map) on the same scale, as the original's
    ``targetNormalizationLocscale``: clip below the background median, multiply by the mask, divide by
    (p95 inside the mask - p95 of the background). Without a mask, voxels above the background's
    median + 3 MAD, dilated by 2 voxels, are taken as the mask."""
    target = np.asarray(target, dtype=np.float32)
    if mask is None:
        med = float(np.median(target))
        mad = 1.4826 * float(np.median(np.abs(target - med))) or float(target.std()) or 1.0
        mask = ndimage.binary_dilation(target > med + 3 * mad, iterations=2).astype(np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    background = target[mask <= 0.5]
    bg_median = float(np.median(background)) if background.size else 0.0
    bg_p95 = float(np.percentile(background, TARGET_PERCENTILE)) if background.size else 0.0
    fg = target[mask > 0.5]
    if fg.size == 0:
        raise ValueError("the target's mask is empty")
    scale = float(np.percentile(fg, TARGET_PERCENTILE)) - bg_p95
    if scale <= 0:
        raise ValueError("the target map has no signal above its background inside the mask")
    return (np.clip(target - bg_median, 0, None) * mask / scale).astype(np.float32)
