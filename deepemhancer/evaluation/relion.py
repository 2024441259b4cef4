"""Baseline: RELION 3.1 post-processing as a user would run it.

1. ``relion_mask_create`` on the average of the half maps: low-pass 15 A, a threshold taken from the map itself
   (see :func:`auto_threshold`), extended by 3 pixels with a 6-pixel raised-cosine edge (RELION's GUI defaults).
2. ``relion_postprocess --i half1 --i2 half2 --mask mask --angpix A --auto_bfac --autob_lowres 10``:
   FSC-weighted, auto-B sharpened, masked map (``postprocess_masked.mrc``).

RELION only accepts cubic boxes, so non-cubic maps are zero-padded to a cube (the map centred in it) and the results
are cropped back onto the input grid. Everything runs in a temporary folder that is removed afterwards.
The programs are looked up on PATH; :func:`relion_programs` returns None when they are not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

from ..io import MapGrid, read_map, write_map
from .sharpen import lowpass

__all__ = ["RelionResult", "relion_programs", "auto_threshold", "relion_postprocess", "MASK_LOWPASS",
           "MASK_EXTEND_PX", "MASK_SOFT_EDGE_PX"]

MASK_LOWPASS = 15.0      # Angstrom, as in the RELION tutorial
MASK_EXTEND_PX = 3       # pixels
MASK_SOFT_EDGE_PX = 6    # pixels
_PROGRAMS = ("relion_mask_create", "relion_postprocess")


@dataclass(frozen=True)
class RelionResult:
    """Outputs on the input grid: the masked sharpened map (the one users take), the unmasked one, the mask."""

    masked: np.ndarray
    unmasked: np.ndarray
    mask: np.ndarray
    resolution: float   # RELION's final (masked, phase-randomisation corrected) FSC 0.143 resolution
    bfactor: float      # B used for sharpening (negative)
    threshold: float    # mask threshold used
    commands: tuple[str, ...]


def relion_programs() -> dict[str, str] | None:
    """Paths of ``relion_mask_create`` and ``relion_postprocess``, or None if either is missing."""
    found = {name: shutil.which(name) for name in _PROGRAMS}
    return found if all(found.values()) else None


def auto_threshold(half1: np.ndarray, half2: np.ndarray, voxel_size: float, n_sigma: float = 6.0) -> float:
    """Mask threshold from the maps: background + ``n_sigma`` x the noise SD, both in the 15 A low-passed average.

    The noise SD is measured on the low-passed half difference ((h1 - h2) / 2 has the same noise as the average and
    no signal), so the threshold sits just above the noise "dust" a user would avoid when choosing it by eye.
    """
    avg = lowpass((half1 + half2) / 2.0, voxel_size, MASK_LOWPASS)
    diff = lowpass((half1 - half2) / 2.0, voxel_size, MASK_LOWPASS)
    background = float(np.median(avg))
    noise = float(np.std(diff))
    peak = float(avg.max())
    # never below 2 % of the peak height: noiseless (masked, zero-background) inputs would otherwise keep everything
    return max(background + n_sigma * noise, background + 0.02 * (peak - background))


def _pad_to_cube(data: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    n = max(data.shape)
    n += n % 2  # RELION prefers even boxes
    out = np.zeros((n, n, n), dtype=np.float32)
    offs = [(n - s) // 2 for s in data.shape]
    sl = tuple(slice(o, o + s) for o, s in zip(offs, data.shape))
    out[sl] = data
    return out, sl


def _read_star_value(path: str, label: str) -> float:
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == label:
                return float(parts[1])
    return float("nan")


def _run(cmd: list[str], cwd: str, log: list[str]) -> None:
    log.append(" ".join(cmd))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def relion_postprocess(half1: np.ndarray, half2: np.ndarray, grid: MapGrid, threshold: float | None = None,
                       workdir: str | None = None) -> RelionResult:
    """Run RELION's automatic mask + auto-B post-processing on two half maps.

    Args:
        half1, half2: ``(z, y, x)`` half maps on ``grid`` (isotropic voxels).
        grid: their grid; results come back on it.
        threshold: mask threshold; default :func:`auto_threshold`.
        workdir: keep the RELION files there instead of a temporary folder.

    Raises:
        FileNotFoundError: RELION is not installed.
        RuntimeError: a RELION program failed (its output is in the message).
    """
    programs = relion_programs()
    if programs is None:
        raise FileNotFoundError("relion_mask_create / relion_postprocess not found on PATH "
                                "(Debian/Ubuntu: apt-get install relion)")
    if not grid.is_isotropic:
        raise ValueError("RELION needs isotropic voxels")
    angpix = grid.sampling
    h1 = np.asarray(half1, dtype=np.float32)
    h2 = np.asarray(half2, dtype=np.float32)
    if threshold is None:
        threshold = auto_threshold(h1, h2, angpix)
    p1, sl = _pad_to_cube(h1)
    p2, _ = _pad_to_cube(h2)
    avg = (p1 + p2) / 2.0
    cube = MapGrid(shape=p1.shape, voxel_size=(angpix,) * 3)
    log: list[str] = []
    tmp = workdir or tempfile.mkdtemp(prefix="deepemhancer_relion_")
    try:
        # the output root must sit in a folder: RELION writes <folder>/logfile.pdf next to it
        os.makedirs(os.path.join(tmp, "PostProcess"), exist_ok=True)
        for name, arr in (("half1.mrc", p1), ("half2.mrc", p2), ("average.mrc", avg)):
            write_map(os.path.join(tmp, name), arr, cube, overwrite=True)
        _run([programs["relion_mask_create"], "--i", "average.mrc", "--o", "mask.mrc",
              "--lowpass", f"{MASK_LOWPASS:g}", "--angpix", f"{angpix:.4f}", "--ini_threshold", f"{threshold:.6g}",
              "--extend_inimask", str(MASK_EXTEND_PX), "--width_soft_edge", str(MASK_SOFT_EDGE_PX), "--j", "1"],
             tmp, log)
        _run([programs["relion_postprocess"], "--i", "half1.mrc", "--i2", "half2.mrc", "--mask", "mask.mrc",
              "--angpix", f"{angpix:.4f}", "--auto_bfac", "--autob_lowres", "10", "--o", "PostProcess/postprocess"], tmp, log)
        masked, _ = read_map(os.path.join(tmp, "PostProcess", "postprocess_masked.mrc"))
        unmasked, _ = read_map(os.path.join(tmp, "PostProcess", "postprocess.mrc"))
        mask, _ = read_map(os.path.join(tmp, "mask.mrc"))
        star = os.path.join(tmp, "PostProcess", "postprocess.star")
        resolution = _read_star_value(star, "_rlnFinalResolution")
        bfactor = _read_star_value(star, "_rlnBfactorUsedForSharpening")
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return RelionResult(masked=np.ascontiguousarray(masked[sl]), unmasked=np.ascontiguousarray(unmasked[sl]),
                        mask=np.ascontiguousarray(mask[sl]), resolution=resolution, bfactor=bfactor,
                        threshold=float(threshold), commands=tuple(log))
