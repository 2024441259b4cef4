"""Stage 5: cut the normalised map into cubes, predict them in batches, and blend the predictions.

Two tilings share one code path (:func:`predict_tiled`), differing only in a :class:`TilingPlan`:

* ``original`` reproduces DeepEMhancer 0.17 exactly: wrap-pad the end of every axis by ``stride - n % stride``
  (1..16 voxels), 64^3 cubes at stride 16, uniform averaging with the accumulated weight starting at 1 (so the output
  is ``sum / (count + 1)``: interior voxels are scaled by 64/65, box corners by 1/2). We keep that quirk in this mode
  so that its output is the original's, bit for bit in exact arithmetic; the original's other quirk (third-axis
  padding computed from the second axis's size) only matters for non-cubic boxes, where we pad each axis by its own
  size instead. Every voxel is predicted 64 times.
* ``fast`` (default): cubes and stride from the model's metadata (``fast_cube``/``fast_stride``; by default the
  original's cube at half of it as stride), predictions blended with a smooth separable window (flat in the
  middle, a raised-cosine taper over the overlap, never zero); cubes whose core holds no signal (outside a
  generous envelope of the molecule) are not predicted at all, their contribution is the background value 0.
  Accumulators are float32 and only as large as the map. For a model without normalisation layers (the shipped
  ones) a voxel's prediction does not depend on the cube around it beyond the network's reach, so large cubes with
  a thin overlap give the original tiling's output with about one prediction per voxel instead of 64.

``predict_fn`` takes a float32 batch ``(b, c, c, c, 1)`` and returns predictions of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .normalize import COARSE_VOXELS, coarse_lowpass, coarse_step, solvent_peak

PredictFn = Callable[[np.ndarray], np.ndarray]
TILINGS = ("fast", "original")


@dataclass(frozen=True)
class TilingPlan:
    """How a map is cut into cubes and blended."""

    cube: int = 64
    stride: int = 16
    mode: str = "original"          # "original" or "fast"
    skip_empty: bool = False        # skip cubes outside the signal envelope (fast mode)

    @classmethod
    def for_mode(cls, mode: str, cube: int = 64, stride: int | None = None) -> "TilingPlan":
        if mode == "original":
            return cls(cube=cube, stride=stride or cube // 4, mode="original", skip_empty=False)
        if mode == "fast":
            return cls(cube=cube, stride=stride or cube // 2, mode="fast", skip_empty=True)
        raise ValueError(f"unknown tiling {mode!r}; choose one of {TILINGS}")

    def fitted(self, shape: tuple[int, ...], multiple: int = 16) -> "TilingPlan":
        """A fast plan whose cube is no larger than the map needs: a map smaller than one cube is predicted as one
        cube of its own size plus the overlap (rounded up to ``multiple``), not in a cube mostly made of padding."""
        if self.mode != "fast":
            return self
        overlap = self.cube - self.stride
        needed = int(np.ceil((max(shape) + overlap) / multiple)) * multiple
        if needed >= self.cube:
            return self
        return TilingPlan(cube=needed, stride=needed - overlap, mode=self.mode, skip_empty=self.skip_empty)


def _original_padding(shape: tuple[int, ...], stride: int, cube: int) -> list[tuple[int, int]]:
    # the original pads 1..stride voxels; a box smaller than one cube would then give no cube at all, so such an
    # axis is wrap-padded up to the cube size instead
    return [(0, max(stride - n % stride, cube - n)) for n in shape]


def _fast_padding(shape: tuple[int, ...], cube: int, stride: int) -> list[tuple[int, int]]:
    """Pad the end of every axis so that cubes at ``stride``, starting at the map's first voxel, cover it.

    The cubes start at voxel 0, as the original's do, instead of being centred on the box faces: a cube centred on
    a face would hold mostly (mirrored) solvent, and a cube that is mostly noise is normalised by the network's
    group normalisation into texture. Measured with the shipped tightTarget on the 20 synthetic test maps
    (benchmarks/benchmark_tiling.py), face-centred cubes gave a median CC with the target of 0.895 and with the
    original tiling's output of 0.986 (647 cubes); cubes aligned at voxel 0 give 0.906 and 0.997 (386 cubes).
    """
    core_margin = (cube - stride) // 2  # a cube dominates the blend from this far inside its faces
    pads = []
    for n in shape:
        # enough cubes that the last voxel lies in the core of the last one
        steps = int(np.ceil(max(n + core_margin - cube, 0) / stride))
        pads.append((0, cube + steps * stride - n))
    return pads


def cube_starts(padded_shape: tuple[int, ...], cube: int, stride: int) -> list[tuple[int, int, int]]:
    """Corner of every cube, in the original program's i -> j -> k loop order."""
    ranges = [range(0, n - cube + 1, stride) for n in padded_shape]
    return [(i, j, k) for i in ranges[0] for j in ranges[1] for k in ranges[2]]


def blend_window(cube: int, stride: int) -> np.ndarray:
    """Separable blending weight: 1 in the cube's middle, a raised-cosine taper over the ``cube - stride`` voxels
    that neighbouring cubes share at each face, never quite 0 (so edges stay defined).

    At ``stride = cube / 2`` this is ``sin^2(pi t)`` across the whole cube. With larger strides the taper stays as
    wide as the overlap, so a voxel near one cube's face is taken mostly from the cube in which it lies deeper:
    predictions close to a face see less context (and, without normalisation layers, the zero padding)."""
    overlap = max(cube - stride, 1)
    i = np.arange(cube) + 0.5
    ramp = np.minimum(1.0, np.minimum(i, cube - i) / overlap)
    w1 = 0.02 + np.sin(0.5 * np.pi * ramp) ** 2
    return (w1[:, None, None] * w1[None, :, None] * w1[None, None, :]).astype(np.float32)


def signal_envelope(data: np.ndarray, *, significance: float = 5.0, lowpass_sigma: float = 2.0,
                    margin: int = 8, min_blob_voxels: int = 100, max_voxels: int = COARSE_VOXELS) -> np.ndarray:
    """Generous mask of where the molecule might be, on a normalised map.

    The map is low-pass filtered (Gaussian, ``lowpass_sigma`` voxels); the solvent level and the filtered noise
    level are read from the solvent peak of the value histogram (so a small error in the noise mean, which the
    filter does not reduce, cannot shift the threshold). Voxels above ``significance`` noise levels, in blobs of at
    least ``min_blob_voxels`` voxels, are signal; the mask is then dilated by ``margin`` voxels so that a cube is
    skipped only far from any density.

    Maps above ``max_voxels`` are searched on a coarse grid
    (:func:`~deepemhancer.normalize.coarse_lowpass`) with a wider margin and brought back to the map's grid, so it
    only grows: a 512^3 map takes 1.5 s instead of 13.
    """
    step = coarse_step(data.shape, max_voxels)
    smooth = coarse_lowpass(data, lowpass_sigma, step)
    level, noise = solvent_peak(smooth.ravel()[:: max(1, smooth.size // 4_000_000)])
    mask = smooth > level + significance * noise
    del smooth
    labels, n = ndimage.label(mask)
    if n:
        keep = np.bincount(labels.ravel()) >= max(1, min_blob_voxels // step ** 3)
        keep[0] = False
        mask = keep[labels]  # a boolean lookup: an int64 one would cost 8 bytes a voxel
    del labels
    # one coarse voxel more than the margin: block averaging lowers thin density a little, and the coarse mask
    # must hold the full-resolution one (measured on a 256^3 map: 98 % of it without the extra voxel, 100 % with)
    coarse_margin = -(-margin // step) + (1 if step > 1 else 0)
    if coarse_margin:
        # = binary_dilation with a 3x3x3 structure iterated `margin` times, as a separable filter (4x faster)
        mask = ndimage.maximum_filter(mask, size=2 * coarse_margin + 1, mode="constant", cval=0)
    if step > 1:
        for axis in range(3):
            mask = np.repeat(mask, step, axis=axis)
        # the voxels past the last whole coarse voxel take the mask of their neighbours
        mask = np.pad(mask, [(0, n - m) for n, m in zip(data.shape, mask.shape)], mode="edge")
    return mask


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _padded_indices(start: int, cube: int, n: int, mode: str) -> np.ndarray:
    """Indices into an axis of length ``n`` of a cube starting at ``start`` of the padded axis: the map itself,
    then what ``np.pad`` would put past its end ("wrap", or "reflect" about the last voxel)."""
    idx = np.arange(start, start + cube)
    if mode == "wrap":
        return idx % n
    period = max(2 * n - 2, 1)
    idx = idx % period
    return np.where(idx >= n, period - idx, idx)


def predict_tiled(data: np.ndarray, predict_fn: PredictFn, plan: TilingPlan, *, batch_size: int = 8,
                  mask: np.ndarray | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Predict a whole map cube by cube and blend the cubes.

    The padded map is never built: each cube is read from the map with the padding's indices, and only the part
    of its prediction that lies inside the map is blended, so the accumulators are as large as the map (a 512^3
    map costs two 0.5 GB arrays here, not two padded ones plus a padded copy of the input).

    Args:
        data: normalised map at the model's voxel size, ``(z, y, x)``.
        predict_fn: the network on a batch of cubes.
        plan: the tiling.
        batch_size: cubes per network call.
        mask: optional boolean map; cubes without any mask voxel are skipped (mask mode, and the fast tiling's
            envelope).
        progress: called with the number of cubes finished after every batch.

    Returns:
        The blended prediction, float32, same shape as ``data``.
    """
    data = np.asarray(data, dtype=np.float32)
    cube, stride = plan.cube, plan.stride
    if plan.mode == "original":
        pads = _original_padding(data.shape, stride, cube)
        pad_mode = "wrap"
    else:
        pads = _fast_padding(data.shape, cube, stride)
        # mirrored noise looks like the map's own solvent to the network
        pad_mode = "reflect"
    padded_shape = tuple(n + before + after for n, (before, after) in zip(data.shape, pads))
    starts = cube_starts(padded_shape, cube, stride)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        # a cube is needed when its core (the part it dominates in the blend) touches the mask; toward a box face
        # with no further cube the core reaches the face, since there this cube alone covers the map
        core = (cube - stride) // 2 if plan.mode == "fast" else 0
        last = [n - cube for n in padded_shape]

        def core_slice(start: int, axis: int) -> slice:
            return slice(start + core if start > 0 else 0,
                         start + cube - core if start + stride <= last[axis] else start + cube)
        starts = [s for s in starts if mask[core_slice(s[0], 0), core_slice(s[1], 1), core_slice(s[2], 2)].any()]
    if plan.mode == "original":
        acc = np.zeros(data.shape, dtype=np.float64)
        weight = np.ones(data.shape, dtype=np.float64)  # the original's weights start at 1
        window = None
    else:
        acc = np.zeros(data.shape, dtype=np.float32)
        weight = np.zeros(data.shape, dtype=np.float32)
        window = blend_window(cube, stride)
    done = 0
    for group in _batches(starts, batch_size):
        # the part of each cube that lies inside the map, per axis
        insides = [[min(cube, n - s) for s, n in zip(start, data.shape)] for start in group]
        batch = np.empty((len(group), cube, cube, cube, 1), dtype=np.float32)
        for b, (start, inside) in enumerate(zip(group, insides)):
            if all(c == cube for c in inside):
                batch[b, ..., 0] = data[start[0]:start[0] + cube, start[1]:start[1] + cube,
                                        start[2]:start[2] + cube]
            else:
                batch[b, ..., 0] = data[np.ix_(*[_padded_indices(s, cube, n, pad_mode)
                                                 for s, n in zip(start, data.shape)])]
        pred = np.asarray(predict_fn(batch), dtype=np.float32).reshape(len(group), cube, cube, cube)
        for (i, j, k), (di, dj, dk), p in zip(group, insides, pred):
            if min(di, dj, dk) <= 0:  # a cube wholly in the padding (the original's wrap-padding of small boxes)
                continue
            region = (slice(i, i + di), slice(j, j + dj), slice(k, k + dk))
            p = p[:di, :dj, :dk]
            if window is None:
                acc[region] += p
                weight[region] += 1.0
            else:
                w = window[:di, :dj, :dk]
                acc[region] += p * w
                weight[region] += w
        done += len(group)
        if progress is not None:
            progress(done)
    if window is None:
        acc /= weight
        return acc.astype(np.float32)
    np.divide(acc, weight, out=acc, where=weight > 0)  # voxels of skipped cubes only stay 0
    return acc


def count_cubes(shape: tuple[int, ...], plan: TilingPlan) -> int:
    """Cubes the plan evaluates on a map of ``shape`` before any skipping."""
    if plan.mode == "original":
        padded = [n + p for n, (_, p) in zip(shape, _original_padding(shape, plan.stride, plan.cube))]
    else:
        padded = [n + a + b for n, (a, b) in zip(shape, _fast_padding(shape, plan.cube, plan.stride))]
    return len(cube_starts(tuple(padded), plan.cube, plan.stride))
