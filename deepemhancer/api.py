"""The pipeline in one call: normalise -> resample -> tile -> predict -> blend -> (clean) -> resample back.

:func:`enhance` works on arrays (notebooks, other tools); :func:`enhance_file` reads and writes MRC files and is what
the ``deepemhancer`` command runs. Both follow exactly the same code path.

Example::

    from deepemhancer import enhance_file, EnhanceOptions
    enhance_file("half1.mrc", "post.mrc", half2="half2.mrc", options=EnhanceOptions(processing_type="wideTarget"))
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import __version__
from .clean import remove_small_components
from .errors import InputError
from .io import MapGrid, check_output_path, read_map, write_map
from .models import LoadedModel, find_model, load_model
from .normalize import NoiseStats, estimate_noise_stats, normalize, normalize_with_mask
from .resample import resample_to_shape, shape_for_voxel_size
from .tiling import TILINGS, TilingPlan, count_cubes, predict_tiled, signal_envelope


@dataclass
class EnhanceOptions:
    """What to run; the command-line flags map one to one onto these fields."""

    processing_type: str = "tightTarget"      # -p
    model_path: str | None = None             # --deepLearningModelPath (file or folder)
    noise_stats: tuple[float, float] | None = None  # --noiseStats MEAN STD
    cleaning_strength: float | None = None    # --cleaningStrengh (None or <= 0: off)
    batch_size: int = 8                       # -b
    tiling: str = "fast"                      # --tiling fast|original
    progress: bool = True                     # tqdm bar on stderr


@dataclass
class EnhanceResult:
    """The processed map and how it was made."""

    data: np.ndarray
    noise_stats: NoiseStats | None
    model_path: str
    cubes_evaluated: int
    cubes_total: int
    seconds: float


def _check_options(options: EnhanceOptions, masked: bool) -> None:
    if options.tiling not in TILINGS:
        raise InputError(f"--tiling must be one of {', '.join(TILINGS)}, got {options.tiling!r}.")
    if options.batch_size < 1:
        raise InputError(f"-b/--batch_size must be at least 1, got {options.batch_size}.")
    if masked and options.noise_stats is not None:
        raise InputError("--noiseStats and -m/--binaryMask are exclusive: the mask mode normalises from the mask.")
    if masked and options.processing_type != "tightTarget":
        raise InputError("-p cannot be combined with -m/--binaryMask: the mask mode has its own model (masked).")
    if options.cleaning_strength is not None and options.cleaning_strength > 0 and options.cleaning_strength >= 1:
        raise InputError(f"--cleaningStrengh must be < 1 (a fraction of the foreground), got "
                         f"{options.cleaning_strength}.")


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=total, unit="cube", desc="deepemhancer", file=sys.stderr, dynamic_ncols=True)
    last = [0]

    def update(done: int) -> None:
        bar.update(done - last[0])
        last[0] = done
    return bar, update


def enhance(data: np.ndarray, voxel_size: float | tuple[float, float, float], *,
            half2: np.ndarray | None = None, mask: np.ndarray | None = None,
            options: EnhanceOptions | None = None, model: LoadedModel | None = None) -> EnhanceResult:
    """Post-process a map given as an array.

    Args:
        data: the map (or half map 1), ``(z, y, x)``.
        voxel_size: Angstrom per voxel, one number or ``(x, y, z)``.
        half2: half map 2; the two halves are averaged.
        mask: binary mask on the same grid (mask normalisation and the masked model).
        options: processing options.
        model: an already loaded model (otherwise resolved from ``options``).

    Returns:
        :class:`EnhanceResult` whose ``data`` has exactly the input's shape.
    """
    options = options or EnhanceOptions()
    _check_options(options, mask is not None)
    start = time.perf_counter()
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise InputError(f"a 3D map is needed, got an array of shape {data.shape}.")
    if half2 is not None:
        if half2.shape != data.shape:
            raise InputError(f"the half maps have different shapes {data.shape} and {half2.shape}; they must come "
                             f"from the same refinement.")
        data = 0.5 * (data + np.asarray(half2, dtype=np.float32))
    voxel_xyz = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    if np.any(voxel_xyz <= 0) or not np.all(np.isfinite(voxel_xyz)):
        raise InputError(f"the voxel size must be positive, got {tuple(voxel_xyz)}; give it with -s/--samplingRate.")
    if model is None:
        kind = "masked" if mask is not None else options.processing_type
        model = load_model(find_model(kind, options.model_path))
    meta = model.metadata

    # normalise on the input grid, as the original does
    stats = None
    if mask is not None:
        normalised = normalize_with_mask(data, mask)
    else:
        if options.noise_stats is not None:
            stats = NoiseStats(float(options.noise_stats[0]), float(options.noise_stats[1]), method="given")
        else:
            stats = estimate_noise_stats(data, voxel_size=float(voxel_xyz.mean()))
        normalised = normalize(data, stats)

    # resample to the model's voxel size (per axis, so anisotropic voxels work)
    work_shape = shape_for_voxel_size(data.shape, voxel_xyz[::-1], meta.voxel_size)
    if min(work_shape) < 8:
        raise InputError(f"the map is only {work_shape} voxels at {meta.voxel_size} A/voxel; it is too small to "
                         f"process (check the voxel size, -s).")
    work = resample_to_shape(normalised, work_shape)
    work_mask = None
    if mask is not None:
        work_mask = resample_to_shape(mask.astype(np.float32), work_shape) > 0.5
    plan = TilingPlan.for_mode(options.tiling, cube=meta.cube_size,
                               stride=meta.stride if options.tiling == "original" else None)
    if plan.skip_empty:
        envelope = signal_envelope(work)
        work_mask = envelope if work_mask is None else (work_mask | envelope)
    total = count_cubes(work.shape, plan)
    bar, progress = _progress_bar(total, options.progress)
    evaluated = [0]

    def counting_progress(done: int) -> None:
        evaluated[0] = done
        if progress:
            progress(done)
    try:
        predicted = predict_tiled(work, model.predict, plan, batch_size=options.batch_size, mask=work_mask,
                                  progress=counting_progress)
    finally:
        if bar is not None:
            bar.close()
    if options.cleaning_strength is not None and options.cleaning_strength > 0:
        predicted = remove_small_components(predicted, options.cleaning_strength)
    out = resample_to_shape(predicted, data.shape)
    return EnhanceResult(data=out, noise_stats=stats, model_path=model.path, cubes_evaluated=evaluated[0],
                         cubes_total=total, seconds=time.perf_counter() - start)


def enhance_file(input_path: str, output_path: str, *, half2: str | None = None, mask_path: str | None = None,
                 sampling: float | None = None, options: EnhanceOptions | None = None,
                 overwrite: bool = False) -> EnhanceResult:
    """Post-process an MRC file (or two half maps) and write the result on exactly the input's grid."""
    options = options or EnhanceOptions()
    inputs = tuple(p for p in (input_path, half2, mask_path) if p)
    check_output_path(output_path, overwrite=overwrite, inputs=inputs)
    _check_options(options, mask_path is not None)
    data, grid = read_map(input_path)
    data2 = None
    if half2:
        data2, grid2 = read_map(half2)
        if data2.shape != data.shape:
            raise InputError(f"half maps {input_path} {data.shape} and {half2} {data2.shape} have different shapes "
                             f"(z, y, x); give the two half maps of the same refinement.")
        if sampling is None and not np.allclose(grid.voxel_size, grid2.voxel_size, rtol=1e-3):
            raise InputError(f"half maps have different voxel sizes {grid.voxel_size} and {grid2.voxel_size} A; "
                             f"give the two half maps of the same refinement (or force one with -s).")
    mask = None
    if mask_path:
        mask, _ = read_map(mask_path)
        if mask.shape != data.shape:
            raise InputError(f"mask {mask_path} has shape {mask.shape} but the map has {data.shape} (z, y, x); the "
                             f"mask must be on the map's grid.")
    if sampling is not None:
        if sampling <= 0:
            raise InputError(f"-s/--samplingRate must be positive, got {sampling}.")
        grid = grid.with_voxel_size(sampling)
    if not grid.is_orthogonal:
        raise InputError(f"{input_path} has a non-orthogonal unit cell (angles {grid.cell_angles}); cryo-EM maps are "
                         f"orthogonal. Re-grid it first (e.g. ChimeraX 'volume resample').")
    if min(grid.voxel_size) <= 0:
        raise InputError(f"{input_path} has no voxel size in its header; give it with -s/--samplingRate.")
    result = enhance(data, grid.voxel_size, half2=data2, mask=mask, options=options)
    write_map(output_path, result.data, grid, overwrite=overwrite, inputs=inputs,
              label=f"deepemhancer {__version__} {os.path.basename(result.model_path)}")
    return result
