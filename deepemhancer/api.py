"""The pipeline in one call: normalise -> resample -> tile -> predict -> blend -> (clean) -> resample back -> keep
what the half maps support.

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
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .clean import remove_small_components
from .confidence import calibration_of, confidence_map, local_resolution
from .erased import ErasedDensity, find_erased
from .errors import InputError
from .evaluation.fsc import halfmap_resolution
from .io import MAX_VOXEL_ANISOTROPY, MapGrid, check_output_path, read_map, write_map
from .models import LoadedModel, find_model, load_model
from .normalize import (NoiseStats, binarise_mask, estimate_noise_stats, normalize, normalize_in_binary_mask,
                        signal_gain, solvent_centred)
from .protect import apply_protect_mask, zone_mask_from_model
from .resample import resample_to_shape, shape_for_voxel_size
from .support import SUPPORT_RESOLUTION, damped_share, halfmap_support
from .tiling import TILINGS, count_cubes, predict_tiled, signal_envelope

RUNTIMES = ("auto", "openvino", "keras")


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
    preserve_halves: bool = False             # --preserveHalves: process the halves independently
    local_resolution: bool = False            # --localResolution: windowed FSC of the input halves
    erased_map: bool = False                  # --erasedMap: a mask of clear input density the output lost
    damp_unsupported: bool = True             # off with --keepUnsupported: keep what the halves show as noise
    gpus: int = 1                             # GPUs to split batches over (from -g)
    runtime: str = "auto"                     # "openvino", "keras" or auto: OpenVINO when installed and no GPU


@dataclass
class EnhanceResult:
    """The processed map and how it was made."""

    data: np.ndarray
    noise_stats: NoiseStats | None
    model_path: str
    runtime: str                              # "openvino" or the Keras backend that ran the network
    cubes_evaluated: int
    cubes_total: int
    seconds: float
    half1: np.ndarray | None = None           # processed halves (preserve_halves)
    half2: np.ndarray | None = None
    confidence: np.ndarray | None = None      # 0..1 P(local error < 0.1 peak), from the halves (preserve_halves)
    local_resolution: np.ndarray | None = None  # Angstrom, from the input halves (local_resolution)
    erased: ErasedDensity | None = None       # what of the input's clear density the output shows (always checked)
    notes: list[str] = field(default_factory=list)  # what was done to the input, or advice, the user should know


def _check_options(options: EnhanceOptions, masked: bool) -> None:
    if options.runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {options.runtime!r}.")
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


MIN_ENVELOPE_VOXELS = 1000  # a signal envelope smaller than this (a 10^3 blob) is taken as "found nothing"
OUTLIER_RANGES = 10.0        # voxels farther than this many 0.01-99.99 % ranges from the map are outliers


#: Half maps better than this (A, FSC 0.143) processed with tightTarget get a note advising highRes.
HIGHRES_ADVICE_RESOLUTION = 3.0


def highres_advice(half1: np.ndarray, half2: np.ndarray, voxel_xyz) -> str | None:
    """A note advising highRes when the half maps are better than :data:`HIGHRES_ADVICE_RESOLUTION`, else None.

    Why (model card, "High-resolution maps" and "tightTarget from highRes"; the current figures:
    ``deepemhancer/models/measured.json``): better than 3 A the shipped highRes is the sharper of the two at about
    tightTarget's FSC0.5 (the real 2.8 A map and the second simulator's 2.2-3.0 A maps), at 3-6 A it is rarely
    better (the original's documentation said 4 A, for its own models). The choice is the user's; the note says it
    exists.
    """
    resolution = halfmap_resolution(half1, half2, voxel_xyz)
    if resolution >= HIGHRES_ADVICE_RESOLUTION:
        return None
    return (f"the half maps reach {resolution:.1f} A (FSC 0.143, unmasked, central box); for maps better than "
            f"{HIGHRES_ADVICE_RESOLUTION:.0f} A the highRes model sharpens more at about the same FSC on the "
            f"measured maps (models/MODEL_CARD.md): try -p highRes for the sharper map")


def clip_outliers(data: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Replace isolated extreme voxels (a hot pixel at 1e30 would otherwise set the whole map's scale).

    Real density lies within about twice the map's 0.01-99.99 % range of it; voxels beyond ``OUTLIER_RANGES`` such
    ranges are set to the map's median (a hot pixel carries no density). Returns the map (a copy only when something
    was replaced) and a note.
    """
    sample = data.ravel()[:: max(1, data.size // 2_000_000)].astype(np.float64)
    lo, hi = np.percentile(sample, [0.01, 99.99])
    spread = hi - lo
    if spread <= 0:
        return data, None
    bounds = (lo - OUTLIER_RANGES * spread, hi + OUTLIER_RANGES * spread)
    extreme = (data < bounds[0]) | (data > bounds[1])
    outliers = int(np.count_nonzero(extreme))
    if not outliers:
        return data, None
    cleaned = data.copy()
    cleaned[extreme] = np.float32(np.median(sample))
    return (cleaned, f"{outliers} extreme voxel(s) (beyond {bounds[0]:.3g}..{bounds[1]:.3g}) set to the map's "
                     f"median; check the map for hot pixels or a corrupt region")


def _available_memory() -> float:
    """Bytes this process may still allocate (MemAvailable; inf where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def check_memory(work_shape, shape, voxel_xyz, model_voxel: float, volumes: int = 1) -> None:
    """Refuse, before allocating anything, a job whose working grid cannot fit in memory.

    About 16 bytes per voxel of the working grid per volume (map, accumulators, envelope) plus 16 per input voxel
    (the halves, the output, the half maps' support).
    """
    need = 16.0 * float(np.prod(work_shape)) * volumes + 16.0 * float(np.prod(shape))
    available = _available_memory()
    if need > available:
        voxel = tuple(round(float(v), 4) for v in voxel_xyz)
        raise InputError(f"at the model's {model_voxel} A/voxel the map ({tuple(shape)[::-1]} voxels of {voxel} A, x y z) "
                         f"becomes a {tuple(work_shape)[::-1]} grid that needs about {need / 1e9:.1f} GB, but "
                         f"{available / 1e9:.1f} GB are available. Check the voxel size (header or "
                         f"-s/--samplingRate): it is the usual cause.")


def _runtime(options: EnhanceOptions) -> str:
    if options.runtime != "auto":
        return options.runtime
    from .devices import installed, nvidia_gpus_present
    return "openvino" if installed("openvino") and not nvidia_gpus_present() else "keras"


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


def _noise_stats(volumes: list[np.ndarray], options: EnhanceOptions, voxel: float) -> NoiseStats:
    """Given statistics, or the automatic estimate (averaged over the volumes so every one is scaled alike)."""
    if options.noise_stats is not None:
        return NoiseStats(float(options.noise_stats[0]), float(options.noise_stats[1]), method="given")
    estimates = [estimate_noise_stats(v, voxel_size=voxel) for v in volumes]
    return NoiseStats(float(np.mean([e.mean for e in estimates])), float(np.mean([e.std for e in estimates])),
                      n_voxels=sum(e.n_voxels for e in estimates), method="auto")


def enhance(data: np.ndarray, voxel_size: float | tuple[float, float, float], *,
            half2: np.ndarray | None = None, mask: np.ndarray | None = None, protect: np.ndarray | None = None,
            options: EnhanceOptions | None = None, model: LoadedModel | None = None) -> EnhanceResult:
    """Post-process a map given as an array.

    Args:
        data: the map (or half map 1), ``(z, y, x)``.
        voxel_size: Angstrom per voxel, one number or ``(x, y, z)``.
        half2: half map 2; the two halves are averaged (or processed one by one with ``preserve_halves``).
        mask: binary mask on the same grid (mask normalisation and the masked model).
        protect: soft mask (0..1) on the same grid where input density is kept (ligands, lipids, glycans).
        options: processing options.
        model: an already loaded model (otherwise resolved from ``options``).

    Returns:
        :class:`EnhanceResult` whose maps have exactly the input's shape.
    """
    options = options or EnhanceOptions()
    _check_options(options, mask is not None)
    start = time.perf_counter()
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise InputError(f"a 3D map is needed, got an array of shape {data.shape}.")
    half2, mask, protect = (None if a is None else np.asarray(a, dtype=np.float32) for a in (half2, mask, protect))
    for name, array in (("map", data), ("half map 2", half2), ("mask", mask), ("protect mask", protect)):
        if array is not None and not np.all(np.isfinite(array)):
            raise InputError(f"the {name} contains NaN or infinite values; fix it upstream before post-processing.")
    if half2 is not None and np.array_equal(data, half2):
        raise InputError("the two half maps are identical (the same file twice?); give the two independent half "
                         "maps of the refinement, or only one map with -i.")
    notes = []
    data, note = clip_outliers(data)
    notes += [f"map: {note}"] if note else []
    if half2 is not None:
        half2, note = clip_outliers(half2)
        notes += [f"half map 2: {note}"] if note else []
    if half2 is not None and half2.shape != data.shape:
        raise InputError(f"the half maps have different shapes {data.shape} and {half2.shape}; they must come from "
                         f"the same refinement.")
    if (options.preserve_halves or options.local_resolution) and half2 is None:
        raise InputError("--preserveHalves and --localResolution need the two half maps (-i half1 -i2 half2).")
    if protect is not None and protect.shape != data.shape:
        raise InputError(f"the protect mask has shape {protect.shape} but the map has {data.shape} (z, y, x); it "
                         f"must be on the map's grid.")
    voxel_xyz = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    if np.any(voxel_xyz <= 0) or not np.all(np.isfinite(voxel_xyz)):
        raise InputError(f"the voxel size must be positive, got {tuple(voxel_xyz)}; give it with -s/--samplingRate.")
    if model is None:
        kind = "masked" if mask is not None else options.processing_type
        model = load_model(find_model(kind, options.model_path), gpus=options.gpus, runtime=_runtime(options))
    meta = model.metadata
    if half2 is not None and meta.kind == "tightTarget":
        advice = highres_advice(data, half2, voxel_xyz)
        notes += [advice] if advice else []
    work_shape = shape_for_voxel_size(data.shape, voxel_xyz[::-1], meta.voxel_size)
    check_memory(work_shape, data.shape, tuple(voxel_xyz), meta.voxel_size,
                 volumes=2 if half2 is not None and options.preserve_halves else 1)
    if min(work_shape) < 8:
        raise InputError(f"the map is only {work_shape} voxels at {meta.voxel_size} A/voxel; it is too small to "
                         f"process (check the voxel size, -s).")
    halves = [data, half2] if half2 is not None else [data]
    if options.preserve_halves or len(halves) == 1:
        volumes = halves
    else:
        average_input = halves[0] + halves[1]
        average_input *= np.float32(0.5)
        volumes = [average_input]

    # normalise on the input grid, as the original does (one normalisation for every volume processed)
    stats, binary = None, None
    if mask is not None:
        # the original's mask normalisation, one binarisation of the user's mask for every volume
        binary = binarise_mask(mask, data.shape)
        normalised = [normalize_in_binary_mask(v, binary) for v in volumes]
        # what the protect mask blends back must have its solvent at 0 everywhere, or a lipid beside or outside the
        # user's mask comes back erased or negative
        protect_sources = [solvent_centred(v, binary) for v in volumes] if protect is not None else normalised
    else:
        stats = _noise_stats(volumes, options, float(voxel_xyz.mean()))
        normalised = [normalize(v, stats) for v in volumes]
        protect_sources = normalised

    plan = meta.tiling_plan(options.tiling).fitted(work_shape)
    work_mask = resample_to_shape(mask.astype(np.float32), work_shape) > 0.5 if mask is not None else None
    total = count_cubes(work_shape, plan)
    bar, progress = _progress_bar(total * len(normalised), options.progress)
    evaluated = [0, 0]

    def counting_progress(done: int) -> None:
        evaluated[1] = done
        if progress:
            progress(evaluated[0] + done)

    # -b counts 64^3 cubes, as in the original: larger cubes go fewer to a batch, so memory stays the same
    batch_size = max(1, options.batch_size * 64 ** 3 // plan.cube ** 3)
    # resample to the model's voxel size (per axis, so anisotropic voxels work); one envelope and one signal level
    # per map, from the average of the volumes (both halves are scaled alike, so their difference stays meaningful)
    # at the model's voxel size the normalised map is used as it is (no copy: a 512^3 map is 0.5 GB); dividing it by
    # the gain below then also scales what the protect mask keeps, which apply_protect_mask fits to the output anyway
    works = [volume if volume.shape == work_shape else resample_to_shape(volume, work_shape) for volume in normalised]
    average = works[0] if len(works) == 1 else sum(works) / len(works)
    envelope = signal_envelope(average) if (plan.skip_empty or meta.input_gain) else None
    if mask is None and envelope is not None and envelope.sum() < MIN_ENVELOPE_VOXELS:
        if signal_envelope(-average).sum() >= MIN_ENVELOPE_VOXELS:
            raise InputError("the map's density is negative (inverted contrast: strong density below the solvent, "
                             "none above it); invert the map first (e.g. relion_image_handler --i in.mrc --o "
                             "out.mrc --multiply_constant -1).")
        # no density stands out of the noise (a very noisy or small map, an inverted or thin one): the fast tiling
        # must not decide that there is nothing; every cube is predicted, as in the original tiling
        envelope = np.ones(work_shape, dtype=bool)
        notes.append("no clear density found above the noise: every cube was predicted (check the map if the "
                     "output looks empty)")
    gain = signal_gain(average, envelope) if meta.input_gain else 1.0
    del average
    cube_mask = work_mask
    if plan.skip_empty:
        cube_mask = envelope if cube_mask is None else (cube_mask | envelope)
    predictions = []
    try:
        for work in works:
            np.divide(work, np.float32(gain), out=work)  # in place: works are this function's own arrays (above)
            predicted = predict_tiled(work, model.predict, plan, batch_size=batch_size,
                                      mask=cube_mask, progress=counting_progress)
            evaluated[0] += evaluated[1]
            if options.cleaning_strength is not None and options.cleaning_strength > 0:
                predicted = remove_small_components(predicted, options.cleaning_strength)
            predictions.append(predicted)
    finally:
        if bar is not None:
            bar.close()

    # output density the two halves show as noise is damped before the protect mask keeps the user's regions
    support = None
    if half2 is not None and options.damp_unsupported and (stats is not None or not binary.all()):
        # the solvent's mean: the normalisation's estimate, or with a user's mask the level outside it
        solvent = stats.mean if stats is not None else float(np.median(0.5 * (halves[0] + halves[1])[~binary]))
        support = halfmap_support(halves[0], halves[1], voxel_xyz, solvent)
    damped = []

    def back(work_map: np.ndarray, original: np.ndarray) -> np.ndarray:
        out = resample_to_shape(work_map, data.shape)
        if support is not None:
            damped.append(damped_share(out, support))
            out *= support
        return apply_protect_mask(out, original, protect) if protect is not None else out

    result = EnhanceResult(data=np.empty(0), noise_stats=stats, model_path=model.path, runtime=model.runtime,
                           cubes_evaluated=evaluated[0], cubes_total=total * len(normalised), seconds=0.0,
                           notes=notes)
    if options.preserve_halves:
        result.half1 = back(predictions[0], protect_sources[0])
        result.half2 = back(predictions[1], protect_sources[1])
        result.data = 0.5 * (result.half1 + result.half2)
        confidence = confidence_map(predictions[0], predictions[1], voxel_size=meta.voxel_size,
                                    calibration=calibration_of(meta.confidence_calibration))
        if not meta.confidence_calibration:
            # measured: the default curve made highRes' map, before it had its own, claim 0.96 where 0.71 was observed
            notes.append("the confidence map uses the default calibration, not one fitted to this model: it may "
                         "claim more than the output delivers; read it as a ranking of regions, not a probability")
        result.confidence = np.clip(resample_to_shape(confidence, data.shape), 0.0, 1.0)
    else:
        result.data = back(predictions[0], protect_sources[0])
    del support
    if damped and max(damped) >= 0.01:
        notes.append(f"{100 * max(damped):.0f} % of the output's density lay where the two half maps show only "
                     f"noise at {SUPPORT_RESOLUTION:.0f} A and was damped (--keepUnsupported keeps it)")
    if options.local_resolution:
        result.local_resolution = local_resolution(halves[0], halves[1], voxel_size=float(voxel_xyz.mean()))
    # never silently erased: compare the output with what was given (inside the user's mask, if any)
    given = volumes[0] if len(volumes) == 1 else 0.5 * (volumes[0] + volumes[1])
    result.erased = find_erased(given, result.data, voxel_xyz, within=binary, with_mask=options.erased_map)
    result.seconds = time.perf_counter() - start
    return result


def extra_output_paths(output_path: str, options: EnhanceOptions) -> dict[str, str]:
    """Files written beside the main output: ``<stem>_half1/_half2/_confidence/_locres/_erased.<ext>`` as requested."""
    stem, ext = os.path.splitext(output_path)
    names = []
    if options.preserve_halves:
        names += ["half1", "half2", "confidence"]
    if options.local_resolution:
        names.append("locres")
    if options.erased_map:
        names.append("erased")
    return {name: f"{stem}_{name}{ext}" for name in names}


def enhance_file(input_path: str, output_path: str, *, half2: str | None = None, mask_path: str | None = None,
                 sampling: float | None = None, options: EnhanceOptions | None = None,
                 protect_mask_path: str | None = None, protect_model_path: str | None = None,
                 protect_radius: float = 3.0, overwrite: bool = False) -> EnhanceResult:
    """Post-process an MRC file (or two half maps) and write the result on exactly the input's grid.

    With ``preserve_halves`` / ``local_resolution`` / ``erased_map`` the extra maps of :func:`extra_output_paths`
    are written too; a note says where clear input density is missing from the output (positions in A).
    """
    options = options or EnhanceOptions()
    inputs = tuple(p for p in (input_path, half2, mask_path, protect_mask_path, protect_model_path) if p)
    extras = extra_output_paths(output_path, options)
    for path in [output_path, *extras.values()]:
        check_output_path(path, overwrite=overwrite, inputs=inputs)
    _check_options(options, mask_path is not None)
    data, grid = read_map(input_path)
    data2 = None
    if half2:
        data2, grid2 = read_map(half2)
        if data2.shape != data.shape:
            raise InputError(f"half maps {input_path} {data.shape} and {half2} {data2.shape} have different shapes "
                             f"(z, y, x); give the two half maps of the same refinement.")
        if sampling is None and not np.allclose(grid.voxel_size, grid2.voxel_size, rtol=1e-3):
            sizes = [tuple(round(v, 4) for v in g.voxel_size) for g in (grid, grid2)]
            raise InputError(f"half maps have different voxel sizes {sizes[0]} and {sizes[1]} A; "
                             f"give the two half maps of the same refinement (or force one with -s).")
        _check_same_place(grid, grid2, f"half maps {input_path} and {half2}")
        if os.path.samefile(input_path, half2):
            raise InputError(f"-i and -i2 are the same file {input_path}; give the two independent half maps.")
    notes: list[str] = []
    mask = _read_on_grid(mask_path, data.shape, "mask", grid, notes) if mask_path else None
    if sampling is not None:
        if sampling <= 0:
            raise InputError(f"-s/--samplingRate must be positive, got {sampling}.")
        grid = grid.with_voxel_size(sampling)
    if not grid.is_orthogonal:
        raise InputError(f"{input_path} has a non-orthogonal unit cell (angles {grid.cell_angles}); cryo-EM maps are "
                         f"orthogonal. Re-grid it first (e.g. ChimeraX 'volume resample').")
    if min(grid.voxel_size) <= 0:
        raise InputError(f"{input_path} has no voxel size in its header; give it with -s/--samplingRate.")
    if grid.anisotropy > MAX_VOXEL_ANISOTROPY:
        raise InputError(f"{input_path} has voxels of {tuple(round(v, 4) for v in grid.voxel_size)} A (x, y, z), "
                         f"{grid.anisotropy:.1f}x longer along one axis: the header describes an image stack or a "
                         f"wrong cell (mx/my/mz), not a reconstruction. Fix the header, or give the voxel size with "
                         f"-s/--samplingRate.")
    nbytes = 4 * int(np.prod(data.shape)) + 4096
    for path in [output_path, *extras.values()]:
        check_output_path(path, overwrite=overwrite, inputs=inputs, nbytes=nbytes * (1 + len(extras)))
    protect = _read_on_grid(protect_mask_path, data.shape, "protect mask", grid, notes) if protect_mask_path else None
    if protect_model_path:
        zone = zone_mask_from_model(protect_model_path, grid.shape, grid.voxel_size, grid.origin,
                                    radius=protect_radius)
        protect = zone if protect is None else np.maximum(protect, zone)
    result = enhance(data, grid.voxel_size, half2=data2, mask=mask, protect=protect, options=options)
    result.notes[:0] = notes
    erased_note = result.erased.note(grid.voxel_size, grid.origin)
    result.notes += [erased_note] if erased_note else []
    label = f"deepemhancer {__version__} {os.path.basename(result.model_path)}"
    for name, path in extras.items():
        extra = {"half1": result.half1, "half2": result.half2, "confidence": result.confidence,
                 "locres": result.local_resolution, "erased": result.erased.mask}[name]
        write_map(path, extra, grid, overwrite=overwrite, inputs=inputs, label=f"{label} {name}")
    write_map(output_path, result.data, grid, overwrite=overwrite, inputs=inputs, label=label)
    return result


def _read_on_grid(path: str, shape: tuple[int, ...], what: str, grid: MapGrid, notes: list[str]) -> np.ndarray:
    volume, own = read_map(path, allow_constant=True)
    low, high = float(volume.min()), float(volume.max())
    if what == "mask" and (high <= 0 or low >= high):
        raise InputError(f"mask {path} is {'empty (no voxel above 0)' if high <= 0 else f'constant ({low:g})'}: a "
                         f"binary mask must outline the molecule (1 inside, 0 outside), e.g. "
                         f"relion_mask_create --i map.mrc --ini_threshold T.")
    if what == "protect mask" and high <= 0:
        raise InputError(f"protect mask {path} is empty (no voxel above 0): it protects nothing. Give a mask that is "
                         f"1 where input density must be kept, or drop --protectMask.")
    if volume.shape != shape:
        raise InputError(f"{what} {path} has shape {volume.shape} but the map has {shape} (z, y, x); the {what} "
                         f"must be on the map's grid.")
    if min(own.voxel_size) > 0 and not np.allclose(own.voxel_size, grid.voxel_size, rtol=1e-3):
        raise InputError(f"{what} {path} has voxels of {tuple(round(v, 4) for v in own.voxel_size)} A but the map "
                         f"{tuple(round(v, 4) for v in grid.voxel_size)} A; resample the {what} onto the map's grid.")
    # masks are often written without the map's origin (Scipion's conversions, mask tools): on the same shape and
    # voxel size they are taken voxel for voxel, and said so
    if _origins_differ(grid, own):
        notes.append(f"the {what} {os.path.basename(path)} has origin {tuple(round(o, 2) for o in own.origin)} A, "
                     f"the map {tuple(round(o, 2) for o in grid.origin)} A: used voxel for voxel")
    return volume


def _origins_differ(a: MapGrid, b: MapGrid) -> bool:
    """The grids start more than half a voxel apart along some axis."""
    return bool(np.any(np.abs(np.subtract(a.origin, b.origin)) > 0.5 * np.asarray(a.voxel_size)))


def _check_same_place(a: MapGrid, b: MapGrid, what: str) -> None:
    """Two grids of the same shape must also start at the same point (within half a voxel)."""
    if _origins_differ(a, b):
        raise InputError(f"{what} have origins {tuple(round(o, 2) for o in a.origin)} and "
                         f"{tuple(round(o, 2) for o in b.origin)} A: they are not on the same grid. Resample one "
                         f"onto the other (e.g. ChimeraX 'volume resample #2 onGrid #1').")
