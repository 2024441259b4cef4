"""Stage 8, a check of the result: clear density of the input that the output no longer shows.

Density erased by deep post-processing (a ligand, a lipid, a weak flexible domain) is what users distrust most, and
without a ground truth nobody can see it in the output alone. After every run the output is compared with its
input as the evaluation's retention metric does (:mod:`deepemhancer.evaluation.retention`): both are low-passed at
6 A, where weak but real regions stand above the noise; the input's *significant* voxels (median + 3 robust SD of
the box) are set against the output's contour enclosing the same volume (no scale or sharpening matters).

* **Retention**: the fraction of the input's significant voxels inside the output's contour.
* **Missing regions**: the input's significant voxels outside it, opened once (the contours of two differently
  sharpened maps disagree along a rim a few A thick), in connected pieces; those of at least
  :data:`MIN_REGION_VOLUME` are reported with where they are and how strong the input is there, and can be written
  as a soft mask: given back with ``--protectMask`` it keeps the input's density there on a second run.

Only the regions make a note. Retention alone does not: it reads 83-89 % on half-map averages of the real maps, but
about 70 % on a deposited (sharpened, masked) map and 28-50 % on a crop that the molecule fills, where "above the
noise" has no solvent to be measured in (the fuzz cases); it is reported as a number.

With a user's mask (``-m``) only density inside it counts: what lies outside was removed on purpose.
Everything runs at about 2 A per voxel (a Fourier crop keeps the map exactly up to 4 A, more than a 6 A low-pass
needs): the check costs the two crops (one FFT of the box each, no more memory than resampling the output back) and
small FFTs, 1.1 s for a 256^3 box on one thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .evaluation.retention import lowpass, significant_region, top_region
from .resample import coarse_grid, resample_to_shape

#: working voxel size of the check (A): Nyquist 4 A, finer than the 6 A low-pass
CHECK_VOXEL = 2.0
#: smallest missing region reported (A^3): a helical turn or a nucleotide-sized ligand at 6 A; smaller pieces are
#: where two contours of differently sharpened maps disagree (measured with tightTarget: at most 263 A^3 on the
#: three real maps' pseudo half maps, where a lipid-like blob it removed measured 716 A^3)
MIN_REGION_VOLUME = 400.0
#: the written mask covers a region grown by this much (A), with a raised-cosine edge as wide
MASK_MARGIN = 2.0


@dataclass
class MissingRegion:
    volume: float                          # A^3
    centre: tuple[float, float, float]     # voxel coordinates (x, y, z) on the input's grid
    strength: float                        # the input's mean 6 A density there, in robust SDs above its median


@dataclass
class ErasedDensity:
    retention: float                       # fraction of the input's significant 6 A density the output shows
    regions: list[MissingRegion] = field(default_factory=list)   # largest first
    mask: np.ndarray | None = None         # soft 0..1 mask of the regions on the input's grid (when asked for)

    def note(self, voxel_size, origin=(0.0, 0.0, 0.0), shown: int = 3) -> str | None:
        """What a user should read when regions are missing (else None); positions in A."""
        if not self.regions:
            return None
        scale, start = np.broadcast_to(np.asarray(voxel_size, float), (3,)), np.asarray(origin, float)
        where = ", ".join(f"{r.volume:.0f} A^3 at ({', '.join(f'{c:.0f}' for c in start + scale * r.centre)}) A"
                          for r in self.regions[:shown])
        more = f" and {len(self.regions) - shown} more" if len(self.regions) > shown else ""
        count = (f"{len(self.regions)} regions of clear input density are missing from it "
                 f"({sum(r.volume for r in self.regions):.0f} A^3 in all)" if len(self.regions) > 1
                 else "a region of clear input density is missing from it")
        return (f"the output shows {100 * self.retention:.0f} % of the density that the input shows above its noise "
                f"(6 A low-pass); {count}: {where}{more}. Look at it in the input: if it is real (ligand, lipid, "
                f"flexible part), --erasedMap writes the missing regions as a mask to give back with --protectMask, "
                f"or try -p wideTarget")


def find_erased(input_map: np.ndarray, output: np.ndarray, voxel_size, *, within: np.ndarray | None = None,
                with_mask: bool = False) -> ErasedDensity:
    """Compare ``output`` with its ``input_map`` (same ``(z, y, x)`` grid, ``voxel_size`` one number or (x, y, z));
    ``within``: a boolean mask (the user's ``-m``) outside which nothing counts; ``with_mask``: also return the soft
    mask of the missing regions on the input's grid."""
    shape = input_map.shape
    coarse, coarse_voxel = coarse_grid(shape, voxel_size, CHECK_VOXEL)       # coarse_voxel: (z, y, x)
    low_in = lowpass(resample_to_shape(input_map, coarse), coarse_voxel[::-1])
    low_out = lowpass(resample_to_shape(output, coarse), coarse_voxel[::-1])
    significant = significant_region(low_in)
    if within is not None:
        significant &= resample_to_shape(within.astype(np.float32), coarse) > 0.5
    count = int(significant.sum())
    if count == 0:   # nothing stands above the input's noise: nothing to lose
        return ErasedDensity(float("nan"), mask=np.zeros(shape, np.float32) if with_mask else None)
    shown = top_region(low_out, count)
    retention = float(np.count_nonzero(significant & shown)) / count
    missing = ndimage.binary_opening(significant & ~shown)
    labels, n = ndimage.label(missing)
    voxel_volume = float(np.prod(coarse_voxel))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * voxel_volume
    keep = [k + 1 for k in np.argsort(sizes)[::-1] if sizes[k] >= MIN_REGION_VOLUME]
    median = float(np.median(low_in))
    spread = 1.4826 * float(np.median(np.abs(low_in - median))) or 1.0
    to_input = np.asarray(shape) / np.asarray(coarse)        # coarse index -> input index, per (z, y, x) axis
    regions = []
    for label in keep:
        region = labels == label
        centre = np.asarray(ndimage.center_of_mass(region)) * to_input
        regions.append(MissingRegion(volume=float(region.sum()) * voxel_volume, centre=tuple(centre[::-1]),
                                     strength=(float(low_in[region].mean()) - median) / spread))
    mask = None
    if with_mask:
        chosen = np.isin(labels, keep)
        distance = ndimage.distance_transform_edt(~chosen, sampling=coarse_voxel)
        soft = np.clip(1.0 - (distance - MASK_MARGIN) / MASK_MARGIN, 0.0, 1.0)
        soft = (0.5 - 0.5 * np.cos(np.pi * soft)).astype(np.float32)
        # coarse index i sits at input index i * n / n_coarse (the Fourier resampling keeps voxel 0 in place)
        mask = np.clip(ndimage.affine_transform(soft, 1.0 / to_input, output_shape=shape, order=1, mode="nearest"),
                       0.0, 1.0).astype(np.float32)
    return ErasedDensity(retention, regions, mask)
