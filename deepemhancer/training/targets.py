"""Training targets: what the network is asked to output, and on which scale.

Definitions (all on the same grid as the simulated map; every quantity in Angstrom):

* **Model envelope distance** ``D(x)``: distance from voxel ``x`` to the nearest polymer atom centre (atoms rounded
  to their voxel), computed with an exact Euclidean distance transform.
* **Soft masks**: the union over atoms of a soft sphere, 1 for ``D <= r``, a raised-cosine edge down to 0 at
  ``D = r + w``, where the radius and edge grow with the atom's local resolution ``d`` so that a blurred, flexible
  region keeps its whole density: ``tight``: r = w = max(3, 0.35 d) (the model's van der Waals envelope plus a
  little: what DeepEMhancer's "tightTarget" keeps; 3 A at high resolution, 4.2 A for a 12 A region);
  ``wide``: r = w = max(6, 0.6 d).
* **Target density** ``T``: the electron-scattering density of the polymer atoms (protein and nucleic acid; no
  waters, no hydrogens, no ligands, no micelle/lipids/blobs) with each atom blurred by ``B_t = 2 d_i^2`` where
  ``d_i`` is the atom's local resolution. **Every modelled atom is in the target**, however weak or flexible, at its
  local resolution: a locally sharpened, model-based map in the spirit of LocScale. The amplitudes follow the atomic
  model (no global B-factor fall-off, hence "sharpened"), but detail finer than the local resolution is attenuated
  (at spatial frequency ``1/d_i`` the atom keeps ``exp(-1/2)`` = 61 % of its amplitude, at ``2/d_i`` only 14 %), so
  the network is never asked to invent detail the data cannot support.
* **Targets per model kind** (each divided by the 95th percentile of its density where the tight mask is above 0.5,
  as the original's ``targetNormalizationLocscale``; the wide target shares the tight one's scale; protein density
  peaks around 1, solvent exactly 0):
  ``tight`` = ``T`` x tight mask (unmodelled density masked away); ``wide`` = ``T`` x wide mask + the unmodelled
  density (micelle, lipids, glycans, blobs) that the input still shows, blurred by 1.5 A: kept, at low resolution;
  ``sharp`` (highRes) = ``T`` with ``B_t = d_i^2`` (78 % of the amplitude at ``1/d_i``) x tight mask.

Why masked model maps: the product's promise is "what LocScale would give you with a perfect model, plus solvent
removal". Everything outside the molecule envelope (noise and, for the tight kinds, detergent, lipids, unmodelled
blobs) is 0 in the target, so the network learns to suppress it, but nothing the model explains is ever removed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: (minimum radius, radius per A of local resolution) for each mask kind; the cosine edge is as wide as the radius.
MASK_RADII = {"tight": (3.0, 0.35), "wide": (6.0, 0.6)}
#: Percentile of the target density inside the tight mask that is scaled to 1.
TARGET_PERCENTILE = 95.0
#: Per-atom target blur ``B_t = k d_i^2`` of the tight/wide targets and of the sharper highRes target.
TARGET_B_PER_D2, SHARP_B_PER_D2 = 2.0, 1.0
#: Gaussian blur (A) of the unmodelled density kept by the wide target.
UNMODELLED_BLUR = 1.5


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


def soft_mask(distance: np.ndarray, radius, edge) -> np.ndarray:
    """1 inside ``radius``, raised-cosine fall to 0 at ``radius + edge`` (float32; radius and edge may be arrays)."""
    t = np.clip((distance - radius) / np.maximum(edge, 1e-6), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


#: local-resolution bins (A) of :func:`envelope_masks`: atoms of one bin share the radius of its worst atom
_RESOLUTION_BINS = (0.0, 8.5, 10.0, 11.5, 13.0, np.inf)


def envelope_masks(xyz_voxels: np.ndarray, shape: tuple[int, int, int], voxel_size: float,
                   local_resolution: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The tight and wide soft masks of atoms at ``xyz_voxels`` (x, y, z in voxels) with their local resolution (A).

    The union over atoms of each atom's soft sphere, whose radius and edge grow with its resolution
    (:data:`MASK_RADII`); computed per resolution bin (one distance transform each) so that it stays a union, smooth
    and monotone in the distance, where a per-voxel "nearest atom's radius" would jump between neighbours.
    """
    d = np.zeros(len(xyz_voxels), np.float32) if local_resolution is None else np.asarray(local_resolution, np.float32)
    masks = {kind: np.zeros(shape, np.float32) for kind in MASK_RADII}
    for lo, hi in zip(_RESOLUTION_BINS[:-1], _RESOLUTION_BINS[1:]):
        selected = (d >= lo) & (d < hi)
        if not selected.any():
            continue
        distance = atom_distance_map(xyz_voxels[selected], shape, voxel_size)
        worst = float(d[selected].max())
        for kind, (r_min, per_d) in MASK_RADII.items():
            radius = max(r_min, per_d * worst)
            np.maximum(masks[kind], soft_mask(distance, radius, radius), out=masks[kind])
    return masks


def target_scale(density: np.ndarray, mask: np.ndarray) -> float:
    """The number the masked target is divided by: the 95th percentile of the density where ``mask > 0.5``."""
    inside = density[mask > 0.5]
    if inside.size == 0:
        raise ValueError("the target mask is empty")
    scale = float(np.percentile(inside, TARGET_PERCENTILE))
    if scale <= 0:
        raise ValueError("the target density is not positive inside its mask")
    return scale


def make_target(density: np.ndarray, mask: np.ndarray, scale: float | None = None) -> np.ndarray:
    """``density * mask / scale``, float32; ``scale`` defaults to p95(density inside mask) (module docstring)."""
    scale = target_scale(density, mask) if scale is None else scale
    return (np.clip(density, 0, None) * mask / scale).astype(np.float32)


def make_targets(truth: np.ndarray, truth_sharp: np.ndarray, masks: dict, unmodelled: np.ndarray) -> dict:
    """The ``tight``, ``wide`` and ``sharp`` targets on one scale (see the module docstring)."""
    scale = target_scale(truth, masks["tight"])
    wide = make_target(truth, masks["wide"], scale)
    extra = np.clip(unmodelled, 0, None)
    extra[extra < 0.05 * extra.max()] = 0.0  # no endless Gaussian tails across the box
    return {"tight": make_target(truth, masks["tight"], scale),
            "wide": (wide + extra / np.float32(scale)).astype(np.float32),
            "sharp": make_target(truth_sharp, masks["tight"], target_scale(truth_sharp, masks["tight"]))}


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
