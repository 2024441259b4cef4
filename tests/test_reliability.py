"""Never a silent empty or wrong map, never a replaced file, no traceback for a user's mistake.

One test per finding of the fuzz of issue 16 (numbers in the test names' docstrings); each runs the real command or
the real API on crops of the real EMD-3488 map with the shipped models, and checks that every input is untouched.
"""

import hashlib
import json
import os
import shutil
import signal

import mrcfile
import numpy as np
import pytest

from deepemhancer import api, io
from deepemhancer.api import EnhanceOptions, enhance
from deepemhancer.cli import main
from deepemhancer.errors import InputError
from deepemhancer.io import MapGrid, read_map, write_map
from deepemhancer.models import PACKAGE_MODELS_DIR
from conftest import data_path

EMD = data_path("emd_3488.mrc")


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _run(tmp_path, capsys, *args, inputs=()):
    """The command with -g -1 --quiet; returns (exit code, stderr); checks that the inputs stay byte-identical."""
    before = {p: _digest(p) for p in inputs}
    code = main([*map(str, args), "-g", "-1", "--quiet"])
    err = capsys.readouterr().err
    assert {p: _digest(p) for p in inputs} == before
    assert "Traceback" not in err
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]
    return code, err


def _write(tmp_path, name, data, voxel=1.05, origin=(0.0, 0.0, 0.0)):
    return write_map(str(tmp_path / name), data, MapGrid(data.shape, (voxel,) * 3, origin), overwrite=True)


def _central(size=48):
    data, _ = read_map(EMD)
    start = [(n - size) // 2 for n in data.shape]
    return np.ascontiguousarray(data[start[0]:start[0] + size, start[1]:start[1] + size, start[2]:start[2] + size])


# ---------------------------------------------------------------------------- 1. no silent empty map
def test_1_noisy_small_crop_is_processed_not_skipped(tmp_path, capsys):
    rng = np.random.default_rng(0)
    crop = _central()[:40, :44, :48]
    noisy = crop + crop.std() * rng.standard_normal(crop.shape).astype(np.float32)
    src = _write(tmp_path, "noisy.mrc", noisy)
    fast, orig = tmp_path / "fast.mrc", tmp_path / "orig.mrc"
    assert _run(tmp_path, capsys, "-i", src, "-o", fast, inputs=[src])[0] == 0
    assert _run(tmp_path, capsys, "-i", src, "-o", orig, "--tiling", "original", inputs=[src])[0] == 0
    a, b = read_map(str(fast))[0], read_map(str(orig))[0]
    assert b.std() > 0 and a.std() > 0.5 * b.std()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_1_thin_slab_density_at_the_box_face_is_kept(tmp_path, capsys):
    slab = _central()[:8]  # 8 voxels thick: only the first cube, near its face, holds the density
    src = _write(tmp_path, "slab.mrc", slab + 0.01 * np.random.default_rng(1).standard_normal(slab.shape))
    out = tmp_path / "out.mrc"
    code, _ = _run(tmp_path, capsys, "-i", src, "-o", out, "--noiseStats", "0", "0.01", inputs=[src])
    assert code == 0 and np.abs(read_map(str(out))[0]).max() > 0


# ---------------------------------------------------------------------------- 2. NaN options
def test_2_nan_protect_radius_and_nan_protect_mask_are_refused(tmp_path, capsys):
    out = tmp_path / "out.mrc"
    code, err = _run(tmp_path, capsys, "-i", EMD, "-o", out, "--protectRadius", "nan", inputs=[EMD])
    assert code == 2 and "finite" in err and not out.exists()
    data, grid = read_map(EMD)
    with pytest.raises(InputError, match="NaN"):
        enhance(data, grid.voxel_size, protect=np.full(data.shape, np.nan, np.float32),
                options=EnhanceOptions(progress=False))


# ---------------------------------------------------------------------------- 3. extreme values
def test_3_one_hot_voxel_does_not_ruin_the_map_and_absurd_scales_are_refused(tmp_path, capsys):
    data, grid = read_map(EMD)
    normal = enhance(data, grid.voxel_size, options=EnhanceOptions(progress=False)).data
    hot = data.copy()
    hot[3, 4, 5] = 1e30
    result = enhance(hot, grid.voxel_size, options=EnhanceOptions(progress=False))
    assert np.corrcoef(result.data.ravel(), normal.ravel())[0, 1] > 0.99
    assert any("extreme voxel" in note for note in result.notes)
    src = _write(tmp_path, "hot.mrc", hot)  # the command too: processed, with the note
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "hot_out.mrc", inputs=[src])
    assert code == 0 and "extreme voxel" in err
    for scale in (1e33, 1e-40):
        src = _write(tmp_path, f"scaled_{scale}.mrc", (data * np.float32(scale)).astype(np.float32))
        code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "out.mrc", inputs=[src])
        assert code == 2 and "rescale" in err


# ---------------------------------------------------------------------------- 4. MRC modes
@pytest.mark.parametrize("mode, dtype", [(4, np.complex64), (3, None)])
def test_4_complex_maps_are_refused_with_their_mode(tmp_path, capsys, mode, dtype):
    path = str(tmp_path / f"mode{mode}.mrc")
    with mrcfile.new(path) as mrc:
        if dtype is not None:
            mrc.set_data(np.ones((16, 16, 16), dtype) * (1 + 1j))
        else:
            mrc.set_data(np.ones((16, 16, 16), np.float32))
    if mode == 3:  # mrcfile writes no int16-complex; patch the header and give the file 2 x int16 per voxel
        with open(path, "r+b") as f:
            f.seek(12)
            f.write(np.int32(3).tobytes())
    code, err = _run(tmp_path, capsys, "-i", path, "-o", tmp_path / "out.mrc", inputs=[path])
    assert code == 2 and f"mode {mode}" in err and "complex" in err


# ---------------------------------------------------------------------------- 5. grids that do not match
def test_5_halves_and_masks_on_other_grids_or_the_same_file_twice_are_refused(tmp_path, capsys):
    data = _central()
    h1 = _write(tmp_path, "h1.mrc", data)
    h2 = _write(tmp_path, "h2.mrc", data + 0.01, origin=(10.0, 0.0, 0.0))
    out = tmp_path / "out.mrc"
    code, err = _run(tmp_path, capsys, "-i", h1, "-i2", h2, "-o", out, inputs=[h1, h2])
    assert code == 2 and "origins" in err
    code, err = _run(tmp_path, capsys, "-i", h1, "-i2", h1, "-o", out, inputs=[h1])
    assert code == 2 and "same file" in err
    mask = _write(tmp_path, "mask.mrc", (data > data.mean()).astype(np.float32), voxel=2.0, origin=(5.0, 5.0, 5.0))
    code, err = _run(tmp_path, capsys, "-i", h1, "-m", mask, "-o", out, inputs=[h1, mask])
    assert code == 2 and "mask" in err and "voxels of" in err
    assert not out.exists()


# ---------------------------------------------------------------------------- 6. image-stack headers
def test_6_absurd_voxel_anisotropy_is_refused_before_any_work(tmp_path, capsys):
    src = _write(tmp_path, "stack.mrc", _central())
    with mrcfile.open(src, "r+") as mrc:
        mrc.header.mz = 1
        mrc.header.cella.z = 50.0 * 1  # z "voxel" of 50 A, as an image stack's header gives
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "out.mrc", inputs=[src])
    assert code == 2 and "image stack" in err


# ---------------------------------------------------------------------------- 7-9. writing
def test_7_a_file_that_appears_during_the_run_is_never_replaced(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.mrc"
    real_enhance = api.enhance

    def enhance_then_someone_writes(*args, **kwargs):
        result = real_enhance(*args, **kwargs)
        out.write_text("another job's result")
        return result
    monkeypatch.setattr(api, "enhance", enhance_then_someone_writes)
    code, err = _run(tmp_path, capsys, "-i", EMD, "-o", out, inputs=[EMD])
    assert code == 2 and "--overwrite" in err
    assert out.read_text() == "another job's result"
    # the last step links the finished file into place, which fails if the name was taken after every check
    tmp = tmp_path / ".tmp_finished.mrc"
    tmp.write_text("our map")
    with pytest.raises(InputError, match="appeared during the run"):
        io._publish(str(tmp), str(out), overwrite=False)
    assert out.read_text() == "another job's result"


def test_8_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_map(str(tmp_path / "m.mrc"), _central(16), MapGrid((16, 16, 16), (1.0,) * 3))
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_9_sigterm_while_writing_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    real_new = mrcfile.new

    def new_then_sigterm(*args, **kwargs):
        handle = real_new(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return handle
    monkeypatch.setattr(io.mrcfile, "new", new_then_sigterm)
    out = tmp_path / "out.mrc"
    code, err = _run(tmp_path, capsys, "-i", EMD, "-o", out, inputs=[EMD])
    assert code == 143 and "terminated" in err and not out.exists()


# ---------------------------------------------------------------------------- 10-11. resources
def test_10_a_voxel_size_that_cannot_fit_in_memory_is_refused_first(tmp_path, capsys):
    code, err = _run(tmp_path, capsys, "-i", EMD, "-o", tmp_path / "out.mrc", "-s", "50", inputs=[EMD])
    assert code == 2 and "voxel size" in err and "GB" in err


def test_11_a_folder_at_the_output_path_and_no_space_are_refused_before_the_work(tmp_path, capsys):
    folder = tmp_path / "out.mrc"
    folder.mkdir()
    code, err = _run(tmp_path, capsys, "-i", EMD, "-o", folder, "--overwrite", inputs=[EMD])
    assert code == 2 and "folder" in err and folder.is_dir()
    with pytest.raises(InputError, match="GB needed"):
        io.check_output_path(str(tmp_path / "x.mrc"), nbytes=shutil.disk_usage(tmp_path).free * 2)


# ---------------------------------------------------------------------------- 12. bad model files
def _model_copy(tmp_path, edit):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    shutil.copy(os.path.join(PACKAGE_MODELS_DIR, "deepemhancer_tightTarget.weights.h5"), folder)
    meta = json.load(open(os.path.join(PACKAGE_MODELS_DIR, "deepemhancer_tightTarget.json")))
    edit(meta)
    path = folder / "deepemhancer_tightTarget.json"
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["architecture"].update(filters=["a", 16, 32]), "architecture"),
    (lambda m: m.update(voxel_size=0), "voxel_size"),
    (lambda m: m.update(voxel_size=-1.0), "voxel_size"),
    (lambda m: m.update(fast_cube=100), "multiple of 8"),
    (lambda m: m["architecture"].update(filters=[12, 24, 48]), "do not fit"),
])
@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_12_bad_model_metadata_is_one_clear_line(tmp_path, capsys, edit, message, backend):
    model = _model_copy(tmp_path, edit)
    code, err = _run(tmp_path, capsys, "-i", EMD, "-o", tmp_path / "out.mrc", "--deepLearningModelPath", model,
                     "--backend", backend, inputs=[EMD])
    assert code == 2 and message in err


def test_12_a_binary_file_as_the_model_is_refused(tmp_path, capsys):
    binary = tmp_path / "model.bin"
    binary.write_bytes(os.urandom(4096))
    code, err = _run(tmp_path, capsys, "-i", EMD, "-o", tmp_path / "out.mrc", "--deepLearningModelPath", binary,
                     inputs=[EMD])
    assert code == 2 and "model" in err


# ---------------------------------------------------------------------------- 13. API
def test_13_api_takes_lists_and_refuses_nan(tmp_path):
    data = _central(32)
    rng = np.random.default_rng(2)
    half2 = (data + 0.01 * rng.standard_normal(data.shape)).tolist()
    result = enhance(data.tolist(), 1.05, half2=half2, options=EnhanceOptions(progress=False))
    assert result.data.shape == data.shape and np.isfinite(result.data).all()
    broken = data.copy()
    broken[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        enhance(broken, 1.05, options=EnhanceOptions(progress=False))


def test_1_an_inverted_map_is_refused_with_the_fix(tmp_path, capsys):
    src = _write(tmp_path, "inverted.mrc", -_central())
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "out.mrc", inputs=[src])
    assert code == 2 and "inverted" in err and not (tmp_path / "out.mrc").exists()


# ---------------------------------------------------------------------------- 14. messages that say the truth
def test_14_empty_full_and_all_ones_masks_get_the_right_message_or_are_used(tmp_path, capsys):
    data = _central()
    src = _write(tmp_path, "map.mrc", data)
    zeros = _write(tmp_path, "zeros.mrc", np.zeros_like(data))
    ones = _write(tmp_path, "ones.mrc", np.ones_like(data))
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "a.mrc", "-m", zeros, inputs=[src, zeros])
    assert code == 2 and "mask" in err and "empty" in err and "nothing to enhance" not in err
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "b.mrc", "-m", ones, inputs=[src, ones])
    assert code == 2 and "constant (1)" in err and "outline the molecule" in err
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "c.mrc", "--protectMask", zeros,
                     inputs=[src, zeros])
    assert code == 2 and "protects nothing" in err
    # an all-ones protect mask is legitimate: keep the input density everywhere
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "d.mrc", "--protectMask", ones,
                     inputs=[src, ones])
    assert code == 0, err
    out, _ = read_map(tmp_path / "d.mrc")
    from scipy import ndimage
    kept = ndimage.gaussian_filter(data, 0.7)          # the input, lightly low-passed as apply_protect_mask does
    assert np.corrcoef(out.ravel(), kept.ravel())[0, 1] > 0.99


def test_14_unset_cell_angles_are_read_as_orthogonal(tmp_path, capsys):
    src = _write(tmp_path, "angles.mrc", _central())
    with mrcfile.open(src, mode="r+") as mrc:
        mrc.header.cellb = (0.0, 0.0, 0.0)
    assert read_map(src)[1].cell_angles == (90.0, 90.0, 90.0)
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "out.mrc", inputs=[src])
    assert code == 0 and "non-orthogonal" not in err


def test_14_random_bytes_as_a_model_are_not_a_model_without_ligands(tmp_path, capsys):
    src = _write(tmp_path, "map.mrc", _central())
    junk = tmp_path / "junk.pdb"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "out.mrc", "--protectModel", junk,
                     inputs=[src, str(junk)])
    assert code == 2 and "no ligand atoms" not in err and ("no atoms" in err or "cannot read" in err)


def test_14_output_extensions_are_the_ones_the_message_lists(tmp_path, capsys):
    src = _write(tmp_path, "map.mrc", _central())
    code, err = _run(tmp_path, capsys, "-i", src, "-o", tmp_path / "out.txt", inputs=[src])
    assert code == 2
    for ext in io.MAP_EXTENSIONS:
        assert ext in err


# ---------------------------------------------------------------------------- property: fast tiling == original
@pytest.mark.parametrize("case", range(6))
def test_fast_tiling_matches_the_original_on_random_crops_scalings_axis_orders_and_noise(case):
    """Random crops (40-90 voxels per axis), scalings (1e-3..1e3), axis orders and noise levels (0-2 map SDs) of
    the test maps: wherever the original tiling shows density, the default tiling gives the same map.

    Near the box faces the two differ by design where density touches the faces (crops of the EMD-20026 crop): the
    original wrap-pads the box (the opposite face becomes the neighbour) and divides its sums by count + 1 (box
    corners at half weight); the fast tiling reflects and blends. The 16/32/64 network of campaign v2 uses that
    context more than v1 did, so the zone is up to 6 voxels deep. Measured (v2 tightTarget): 6 voxels from the faces
    CC 0.995-0.999; over the whole box 0.937-0.995; no bright rim in the fast output (its maximum within 3 voxels
    of the faces 0.76-1.12 x its maximum inside)."""
    rng = np.random.default_rng(1000 + case)
    source = read_map(EMD)[0] if case % 2 == 0 else read_map(data_path("eval_emd20026_sub.mrc"))[0]
    size = [int(rng.integers(40, min(90, n) + 1)) for n in source.shape]
    start = [int(rng.integers(0, n - s + 1)) for n, s in zip(source.shape, size)]
    crop = source[tuple(slice(a, a + s) for a, s in zip(start, size))]
    crop = np.transpose(crop, rng.permutation(3))
    crop = crop * np.float32(10 ** rng.uniform(-3, 3))
    crop = crop + rng.normal(0, rng.uniform(0, 2) * float(crop.std()), crop.shape).astype(np.float32)
    voxel = float(rng.uniform(0.9, 1.4))
    outputs = {t: enhance(np.ascontiguousarray(crop), voxel, options=EnhanceOptions(progress=False, tiling=t)).data
               for t in ("original", "fast")}
    original, fast = outputs["original"], outputs["fast"]
    if float(original.max()) <= 0.05:            # the original shows no density: nothing to compare
        assert float(fast.max()) <= 0.1
        return
    interior = tuple(slice(6, n - 6) for n in original.shape)
    cc = np.corrcoef(original[interior].ravel(), fast[interior].ravel())[0, 1]
    assert cc >= 0.99, (case, crop.shape, voxel, cc)
    assert np.corrcoef(original.ravel(), fast.ravel())[0, 1] >= 0.92
    face_zone = np.ones(fast.shape, bool)
    face_zone[tuple(slice(3, n - 3) for n in fast.shape)] = False
    assert float(fast[face_zone].max()) <= 1.5 * float(fast[~face_zone].max())   # no bright rim at the faces
    assert float(fast.max()) > 0.5 * float(original.max())
