"""Stage 1 and 7: read and write MRC/CCP4 maps on an explicit grid.

Arrays are always returned in the standard order ``(z, y, x)`` whatever the file's axis order (mapc/mapr/maps), and
every map carries a :class:`MapGrid` that says where its voxels sit in space. Writing uses that grid, so an output
lies exactly on its input (the original program dropped the origin: its issue #42).

Placement follows the convention used by EMDB and UCSF Chimera: the header ``origin`` field when it is non-zero,
otherwise ``nstart * voxel_size``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field

import mrcfile
import numpy as np

from .errors import InputError

MAP_EXTENSIONS = (".mrc", ".map", ".mrcs", ".ccp4")
COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}  # valid MRC modes that hold no density map
MAX_VOXEL_ANISOTROPY = 2.0     # voxel sides of a real volume differ by less (an image stack's z "voxel" does not)


@dataclass(frozen=True)
class MapGrid:
    """Where the voxels of a ``(z, y, x)`` array sit in space.

    Attributes:
        shape: array shape ``(nz, ny, nx)``.
        voxel_size: voxel size in Angstrom along ``(x, y, z)``.
        origin: physical position in Angstrom ``(x, y, z)`` of voxel ``[0, 0, 0]``.
        cell_angles: unit-cell angles in degrees (90, 90, 90 for every cryo-EM map we can process).
    """

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cell_angles: tuple[float, float, float] = field(default=(90.0, 90.0, 90.0))

    @property
    def is_isotropic(self) -> bool:
        vx, vy, vz = self.voxel_size
        return np.allclose([vy, vz], vx, rtol=1e-3)

    @property
    def anisotropy(self) -> float:
        """Largest voxel side over the smallest (1 for cubic voxels)."""
        sides = [v for v in self.voxel_size if v > 0]
        return max(sides) / min(sides) if sides else 1.0

    @property
    def is_orthogonal(self) -> bool:
        return np.allclose(self.cell_angles, 90.0, atol=1e-3)

    @property
    def sampling(self) -> float:
        """The isotropic voxel size in Angstrom (the x size; check :attr:`is_isotropic` first)."""
        return float(self.voxel_size[0])

    def with_voxel_size(self, voxel_size: float) -> "MapGrid":
        """The same grid with an isotropic voxel size (the ``-s`` flag); the origin stays in Angstrom."""
        return MapGrid(self.shape, (float(voxel_size),) * 3, self.origin, self.cell_angles)


def _axis_permutation(mapc: int, mapr: int, maps: int) -> tuple[int, int, int]:
    """The ``np.transpose`` axes that turn the file's (sections, rows, columns) array into (z, y, x)."""
    file_axes = (int(maps), int(mapr), int(mapc))  # physical axis (1=x, 2=y, 3=z) of each file array axis
    if sorted(file_axes) != [1, 2, 3]:
        raise InputError(f"invalid axis order mapc/mapr/maps = {mapc},{mapr},{maps}: it must be a permutation "
                         f"of 1,2,3. The header is corrupt; re-save the map with a standard tool (e.g. relion_image_"
                         f"handler or ChimeraX 'save').")
    # target axis t holds physical axis 3 - t (z, y, x)
    return tuple(file_axes.index(3 - t) for t in range(3))


def read_map(path: str | os.PathLike, *, allow_constant: bool = False) -> tuple[np.ndarray, MapGrid]:
    """Read an MRC/CCP4 map.

    Args:
        path: file name.
        allow_constant: accept a constant map (masks may legitimately be all ones; callers judge).

    Returns:
        ``(data, grid)``: a float32 C-contiguous ``(z, y, x)`` array and its :class:`MapGrid`.

    Raises:
        InputError: missing, unreadable, truncated or non-volume files; NaN/Inf, empty or constant maps.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file. Check the path (relative paths are taken from {os.getcwd()}).")
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory; give the map file itself.")
    if os.path.getsize(path) < 1024:
        raise InputError(f"{path} is {os.path.getsize(path)} bytes long, shorter than an MRC header (1024 bytes): "
                         f"it is not an MRC map, or it was truncated while copying.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", permissive=True) as mrc:
                mode = int(mrc.header.mode)
                if mode in COMPLEX_MODES:  # other unknown modes: not an MRC file at all, said below
                    kind = COMPLEX_MODES[mode]
                    raise InputError(f"{path} stores {kind} (MRC mode {mode}); a real-valued density map (mode 0, 1, "
                                     f"2, 6 or 12) is needed. Convert it first (e.g. take the inverse Fourier "
                                     f"transform of a complex map).")
                if mrc.data is None:
                    raise InputError(f"{path} is not a complete MRC map: it is shorter than its header says "
                                     f"(truncated download or copy?) or in another format. Copy it again, or "
                                     f"convert it to MRC.")
                header = mrc.header
                raw = np.asarray(mrc.data)
                voxel = mrc.voxel_size
                voxel_size = (float(voxel.x), float(voxel.y), float(voxel.z))
                mapcrs = (int(header.mapc), int(header.mapr), int(header.maps))
                nstart = (int(header.nxstart), int(header.nystart), int(header.nzstart))
                header_origin = (float(header.origin.x), float(header.origin.y), float(header.origin.z))
                angles = (float(header.cellb.alpha), float(header.cellb.beta), float(header.cellb.gamma))
                if angles == (0.0, 0.0, 0.0):  # never set by the writer: the standard orthogonal cell
                    angles = (90.0, 90.0, 90.0)
                is_volume = mrc.is_volume() or mrc.is_volume_stack() or raw.ndim == 3
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot be read as an MRC map ({exc}). Is it truncated or in another format? "
                         f"Convert it to MRC (e.g. relion_image_handler --i in --o out.mrc).") from exc
    if raw.ndim != 3 or not is_volume:
        raise InputError(f"{path} holds a {raw.ndim}-D image of shape {raw.shape}, not a 3D volume.")
    if raw.size == 0 or min(raw.shape) < 2:
        raise InputError(f"{path} is an empty or flat map of shape {raw.shape}; a 3D map is needed.")
    if any(not np.isfinite(v) or v <= 0 for v in voxel_size):
        voxel_size = (0.0, 0.0, 0.0)  # unknown: callers require -s then
    if mapcrs == (0, 0, 0):  # some old writers leave the axis order empty: it means the standard one
        mapcrs = (1, 2, 3)
    perm = _axis_permutation(*mapcrs)
    data = np.ascontiguousarray(np.transpose(raw, perm), dtype=np.float32)
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"{path} contains {bad} NaN or infinite values. Fix the map upstream (a failed "
                         f"reconstruction or a division by zero in masking) before post-processing.")
    if float(data.max()) == float(data.min()) and not allow_constant:
        raise InputError(f"{path} is constant (every voxel is {float(data.min())}): there is nothing to enhance.")
    # the map's typical large magnitude, not its maximum: a single hot voxel is the pipeline's to repair
    typical = float(np.percentile(np.abs(data.ravel()[:: max(1, data.size // 1_000_000)]), 99.9))
    if (typical < 1e-30 and not allow_constant) or typical > 1e30:
        raise InputError(f"{path} has values of magnitude {typical:.3g}, outside what float32 statistics can handle "
                         f"(1e-30..1e30); rescale the map (e.g. relion_image_handler --multiply_constant).")

    # nstart counts columns/rows/sections: map each to its physical axis
    nstart_xyz = [0.0, 0.0, 0.0]
    for start, phys in zip(nstart, mapcrs):
        nstart_xyz[phys - 1] = float(start)
    if any(header_origin) and all(np.isfinite(header_origin)):
        origin = header_origin
    else:
        origin = tuple(s * v for s, v in zip(nstart_xyz, voxel_size))
    grid = MapGrid(shape=tuple(int(n) for n in data.shape), voxel_size=voxel_size,
                   origin=tuple(float(o) for o in origin), cell_angles=angles)
    return data, grid


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False,
                      inputs: tuple[str | os.PathLike, ...] = (), nbytes: int = 0,
                      extensions: tuple[str, ...] = MAP_EXTENSIONS) -> str:
    """Validate an output file name before any work is done (a map by default; ``extensions`` for other files).

    Raises:
        InputError: wrong extension, missing or unwritable folder, a folder at the path, less than ``nbytes`` free,
            an input file, or an existing file without ``overwrite``.
    """
    path = os.fspath(path)
    if not path.lower().endswith(extensions):
        accepted = (f".mrc or .map (or {', '.join(MAP_EXTENSIONS[2:])})" if extensions == MAP_EXTENSIONS
                    else " or ".join(extensions))
        raise InputError(f"output {path}: the name must end in {accepted}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"output {path}: folder {folder} does not exist; create it first.")
    if os.path.isdir(path):
        raise InputError(f"output {path} is an existing folder; give a file name (--overwrite never replaces a "
                         f"folder).")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output {path}: folder {folder} is not writable; choose another output folder.")
    if nbytes:
        free = shutil.disk_usage(folder).free
        if free < nbytes:
            raise InputError(f"output {path}: {free / 1e9:.2f} GB free in {folder}, {nbytes / 1e9:.2f} GB needed; "
                             f"free some space or write elsewhere.")
    for other in inputs:
        if other and os.path.exists(other) and os.path.exists(path) and os.path.samefile(path, other):
            raise InputError(f"output {path} is one of the inputs; choose another output name (inputs are never "
                             f"overwritten).")
    if os.path.exists(path) and not overwrite:
        raise InputError(f"output {path} already exists; choose another name or pass --overwrite.")
    return path


def write_map(path: str | os.PathLike, data: np.ndarray, grid: MapGrid, *, overwrite: bool = False,
              inputs: tuple[str | os.PathLike, ...] = (), label: str | None = None) -> str:
    """Write a ``(z, y, x)`` array as a float32 MRC2014 file on ``grid``, atomically.

    The file is written under a temporary name in the destination folder and moved into place, so a reader never
    sees a half-written map and an interrupted run leaves no output. Without ``overwrite`` it is hard-linked to
    ``path``, which fails if a file appeared there during the run (never replaced); its mode follows the umask.

    Args:
        path: output file (.mrc or .map).
        data: array of shape ``grid.shape``.
        grid: where the voxels sit (voxel size and origin are written to the header; axis order is standard).
        overwrite: replace an existing file (never an input).
        inputs: input files that must not be overwritten.
        label: text stored in the first header label.

    Returns:
        The path written.
    """
    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.shape != tuple(grid.shape):
        raise ValueError(f"array shape {data.shape} does not match the grid {grid.shape}")
    with _atomic_output(path, overwrite, ".mrc") as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = tuple(grid.voxel_size)
            mrc.header.origin = tuple(grid.origin)
            mrc.header.nxstart = mrc.header.nystart = mrc.header.nzstart = 0
            mrc.header.cellb = tuple(grid.cell_angles)
            if label:
                mrc.header.label[0] = label[:80].encode("ascii", "replace")
                mrc.header.nlabl = 1
            mrc.update_header_stats()
    return path


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> str:
    """Write a small text file (the run summary) atomically, with the same no-replace rule as :func:`write_map`."""
    path = os.fspath(path)
    with _atomic_output(path, overwrite, ".txt") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return path


@contextlib.contextmanager
def _atomic_output(path: str, overwrite: bool, suffix: str):
    """A temporary file beside ``path`` (created exclusively, mode 0600) for the caller to fill; then given the mode
    open() would have given the user's file and published by :func:`_publish`. Removed whatever happens."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        _publish(tmp, path, overwrite)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: str, path: str, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``; without ``overwrite`` only if nothing is there, checked atomically."""
    if overwrite:
        if os.path.isdir(path):
            raise InputError(f"output {path} became a folder during the run; nothing was written.")
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic: fails when the name exists, whatever created it meanwhile
    except FileExistsError:
        raise InputError(f"output {path} appeared during the run (another job?); it was left untouched and nothing "
                         f"was written. Choose another name or pass --overwrite.") from None
    except OSError:  # a file system without hard links: check as late as possible, then rename
        if os.path.lexists(path):
            raise InputError(f"output {path} appeared during the run (another job?); it was left untouched and "
                             f"nothing was written. Choose another name or pass --overwrite.") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)
