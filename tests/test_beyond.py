"""Beyond the original: confidence map, half-map-preserving output, protect mask, local resolution."""

import os

import numpy as np
import pytest
from scipy import ndimage

from deepemhancer.cli import main
from deepemhancer.confidence import CALIBRATION_POWER, CALIBRATION_X0, confidence_map, local_resolution
from deepemhancer.errors import InputError
from deepemhancer.io import MapGrid, read_map, write_map
from deepemhancer.protect import apply_protect_mask, zone_mask
from conftest import data_path, gaussian_blob


def test_confidence_is_higher_where_processed_halves_agree_than_where_they_do_not():
    rng = np.random.default_rng(0)
    shape = (64, 64, 64)
    signal = gaussian_blob(shape, (20, 32, 32), 5)
    h1 = signal + 0.02 * rng.standard_normal(shape)
    h2 = signal + 0.02 * rng.standard_normal(shape)
    # a "hallucinated" feature: strong, but different in the two halves
    h1 += 0.8 * ndimage.gaussian_filter(rng.standard_normal(shape), 2) * gaussian_blob(shape, (46, 32, 32), 5) * 10
    h2 += 0.8 * ndimage.gaussian_filter(rng.standard_normal(shape), 2) * gaussian_blob(shape, (46, 32, 32), 5) * 10
    conf = confidence_map(h1.astype(np.float32), h2.astype(np.float32))
    assert conf.shape == shape and conf.dtype == np.float32
    assert conf.min() >= 0 and conf.max() <= 1
    agreeing, disagreeing = conf[20, 32, 32], conf[46, 32, 32]
    assert agreeing > 0.9 and disagreeing < 0.2
    assert conf[2, 2, 2] > 0.9  # empty solvent where the halves differ by a few % of the peak: confident


def test_confidence_follows_the_calibrated_curve():
    """Halves that differ by CALIBRATION_X0 x the peak density are an even chance; half that, far more likely."""
    ones = np.ones((24, 24, 24), np.float32)
    for spread, expected in ((CALIBRATION_X0, 0.5), (CALIBRATION_X0 / 2, 1 / (1 + 0.5 ** CALIBRATION_POWER))):
        conf = confidence_map(ones + spread / 2, ones - spread / 2)
        np.testing.assert_allclose(conf, expected, rtol=1e-4)


def test_the_model_s_own_calibration_sets_the_confidence(tmp_path, small_models_dir):
    """A calibration stored in a model's metadata (benchmark_confidence.py --fit-calibration --store) is the one the
    API applies; a model without one gets the defaults, with a note; a malformed one is refused when the model
    loads."""
    import json
    import shutil

    from deepemhancer.api import EnhanceOptions, enhance
    from deepemhancer.models import load_model

    folder = tmp_path / "models"
    shutil.copytree(small_models_dir, folder)
    meta_path = folder / "deepemhancer_tightTarget.json"
    data, grid = read_map(data_path("emd_21457_seg.mrc"))
    rng = np.random.default_rng(3)
    h1, h2 = (data + 0.3 * rng.standard_normal(data.shape) for _ in range(2))

    def confidence():
        result = enhance(h1, grid.voxel_size, half2=h2, model=load_model(str(meta_path)),
                         options=EnhanceOptions(preserve_halves=True, progress=False))
        uncalibrated.append(any("default calibration" in note for note in result.notes))
        return result.confidence

    uncalibrated = []
    default = confidence()
    meta = json.loads(meta_path.read_text())
    meta["confidence_calibration"] = {"x0": CALIBRATION_X0 / 4, "power": CALIBRATION_POWER, "fitted_on": "test"}
    meta_path.write_text(json.dumps(meta))
    stricter = confidence()
    uncertain = default < 0.9
    assert uncertain.any() and np.all(stricter[uncertain] < default[uncertain])   # x0 / 4: less confident
    assert uncalibrated == [True, False]          # the user is told when the default curve stands in
    meta["confidence_calibration"] = {"x0": -1, "power": 2}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="confidence_calibration"):
        load_model(str(meta_path))


def test_local_resolution_separates_sharp_and_blurred_regions():
    rng = np.random.default_rng(1)
    shape = (48, 48, 80)
    texture = rng.standard_normal(shape).astype(np.float32)
    sharp = ndimage.gaussian_filter(texture, 0.6)
    blurred = ndimage.gaussian_filter(texture, 2.5) * (sharp.std() / ndimage.gaussian_filter(texture, 2.5).std())
    signal = np.concatenate([sharp[..., :40], blurred[..., 40:]], axis=-1)
    noise = 0.5 * sharp.std()
    h1 = signal + noise * rng.standard_normal(shape).astype(np.float32)
    h2 = signal + noise * rng.standard_normal(shape).astype(np.float32)
    res = local_resolution(h1, h2, voxel_size=1.0, window_angstrom=16, step_angstrom=8)
    assert res.shape == shape and res.min() >= 2.0 - 1e-3 and res.max() <= 16.0 + 1e-3  # Nyquist .. window size
    assert np.median(res[8:40, 8:40, 8:28]) + 0.5 < np.median(res[8:40, 8:40, 52:72])


def test_protect_mask_restores_suppressed_density_at_the_output_scale():
    shape = (48, 48, 48)
    protein = gaussian_blob(shape, (24, 24, 16), 4)
    ligand = 0.5 * gaussian_blob(shape, (24, 24, 34), 2)
    original = 10 * (protein + ligand)          # normalised input: ten times the output's scale
    output = protein.copy()                     # the network kept the protein and removed the ligand
    protect = np.clip(3 - np.sqrt(((np.indices(shape) - np.array([24, 24, 34])[:, None, None, None]) ** 2).sum(0))
                      / 2, 0, 1)
    out = apply_protect_mask(output, original, protect, lowpass_voxels=0)
    assert out[24, 24, 34] == pytest.approx(0.5, rel=0.15)   # the ligand is back, at the protein's scale
    np.testing.assert_array_equal(out[protect == 0], output[protect == 0])
    with pytest.raises(InputError, match="protect mask"):
        apply_protect_mask(output, original, protect[:-1])


def _emd3488_and_a_lipid():
    """The deposited EMD-3488 map (masked: 71 % of the box is exactly 0), its molecule (voxels above the 90th
    percentile after a 1-voxel blur), that grown by 3 voxels, and a lipid-like blob (a 3 A Gaussian at 0.6 x the
    protein's mean) 4+ A beside the latter: (data, grid, molecule, grown, centre (z, y, x), distance to the centre
    (A), blob)."""
    data, grid = read_map(data_path("emd_3488.mrc"))
    voxel = grid.voxel_size[0]
    molecule = ndimage.gaussian_filter(data, 1.0) > np.percentile(data, 90)
    grown = ndimage.binary_dilation(molecule, iterations=3)
    idx = np.indices(data.shape)
    beside = np.argwhere((ndimage.distance_transform_edt(~grown) * voxel > 4)
                         & (np.min([np.minimum(i, n - 1 - i) for i, n in zip(idx, data.shape)], axis=0) > 10))
    centre = beside[np.argmin(np.linalg.norm(beside - np.array(ndimage.center_of_mass(molecule)), axis=1))]
    distance = np.sqrt(sum(((i - c) * voxel) ** 2 for i, c in zip(idx, centre)))
    blob = (0.6 * data[molecule].mean() * np.exp(-distance ** 2 / 18)).astype(np.float32)
    return data, grid, molecule, grown, tuple(centre), distance, blob


def test_protect_mask_keeps_a_lipid_outside_the_users_mask_with_the_masked_model():
    """With -m the input is normalised inside the mask only (centred on its median, zero outside), but what the
    protect mask brings back must still be the input's density: a lipid-like blob just outside the user's mask comes
    back at its input contrast (before the fix: -0.08 of it, erased and negative), and is gone without; also when
    the solvent is not at 0 and when the map is depositor-masked (no solvent noise to measure)."""
    from deepemhancer.api import EnhanceOptions, enhance
    from deepemhancer.models import PACKAGE_MODELS_DIR, load_model

    data, grid, molecule, mask, _, distance, lipid = _emd3488_and_a_lipid()
    core = distance < 3
    assert not mask[core].any()
    noisy = data + lipid + 0.05 * np.random.default_rng(4).standard_normal(data.shape).astype(np.float32)
    contrast_in = noisy[core].mean() / np.percentile(noisy[molecule], 90)
    model = load_model(os.path.join(PACKAGE_MODELS_DIR, "deepemhancer_masked.json"))
    protect = np.clip((8 - distance) / 2, 0, 1).astype(np.float32)
    kept = {}
    for name, volume, zone in (("default", noisy, None), ("solvent at 0.2", noisy + 0.2, protect),
                               ("depositor-masked", data + lipid, protect)):
        out = enhance(volume, grid.voxel_size, mask=mask, protect=zone, model=model,
                      options=EnhanceOptions(progress=False)).data
        kept[name] = out[core].mean() / np.percentile(out[molecule], 90) / contrast_in
    assert abs(kept["default"]) < 0.05, kept          # outside the user's mask the masked model keeps nothing
    assert 0.6 < kept["solvent at 0.2"] < 1.6 and 0.6 < kept["depositor-masked"] < 1.6, kept


def test_zone_mask_around_atoms():
    grid = MapGrid((40, 40, 40), (1.0, 1.0, 1.0), origin=(100.0, 50.0, 0.0))
    mask = zone_mask(grid.shape, grid.voxel_size, grid.origin, np.array([[110.0, 60.0, 20.0]]), radius=3.0)
    assert mask[20, 10, 10] == 1.0 and mask[20, 10, 16] == 0.0   # (z, y, x) = (20, 10, 10) is the atom
    with pytest.raises(InputError, match="inside the map box"):
        zone_mask(grid.shape, grid.voxel_size, grid.origin, np.array([[0.0, 0.0, 0.0]]))


def test_command_writes_processed_halves_confidence_and_local_resolution(tmp_path, small_models_dir):
    data, grid = read_map(data_path("emd_21457_seg.mrc"))
    rng = np.random.default_rng(2)
    h1 = write_map(tmp_path / "h1.mrc", data + 0.2 * rng.standard_normal(data.shape), grid)
    h2 = write_map(tmp_path / "h2.mrc", data + 0.2 * rng.standard_normal(data.shape), grid)
    protect = write_map(tmp_path / "protect.mrc", (data > 1.0).astype(np.float32), grid)
    out = str(tmp_path / "post.mrc")
    assert main(["-i", h1, "-i2", h2, "-o", out, "--deepLearningModelPath", small_models_dir, "--preserveHalves",
                 "--localResolution", "--protectMask", protect, "--quiet"]) == 0
    maps = {name: read_map(str(tmp_path / f"post{suffix}.mrc"))
            for name, suffix in [("avg", ""), ("half1", "_half1"), ("half2", "_half2"), ("conf", "_confidence"),
                                 ("locres", "_locres")]}
    for name, (volume, g) in maps.items():
        assert g.shape == grid.shape and g.origin == pytest.approx(grid.origin), name
        assert g.voxel_size == pytest.approx(grid.voxel_size) and np.all(np.isfinite(volume)), name
    np.testing.assert_allclose(maps["avg"][0], 0.5 * (maps["half1"][0] + maps["half2"][0]), atol=1e-5)
    assert maps["conf"][0].min() >= 0 and maps["conf"][0].max() <= 1
    assert maps["locres"][0].min() >= 2 * 1.05 - 1e-3


def test_half_map_features_need_two_halves(tmp_path, small_models_dir, capsys):
    out = str(tmp_path / "o.mrc")
    assert main(["-i", data_path("emd_3488.mrc"), "-o", out, "--preserveHalves"]) == 2
    assert "need the two half maps" in capsys.readouterr().err
    assert not os.path.exists(out)


def _pseudo_halves_with_lipid(seed=4, lipid=True):
    """EMD-3488 as the benchmark's real pseudo half maps (B = 100 A^2 blur, white noise as strong as the blurred map)
    with the lipid of :func:`_emd3488_and_a_lipid`."""
    from deepemhancer.evaluation.sharpen import apply_bfactor
    data, grid, molecule, _, centre, _, blob = _emd3488_and_a_lipid()
    blurred = apply_bfactor(data + blob if lipid else data, grid.voxel_size, 100.0)
    rng = np.random.default_rng(seed)
    halves = [blurred + rng.normal(0.0, float(blurred.std()), data.shape).astype(np.float32) for _ in range(2)]
    return halves, grid, centre, molecule


def test_command_names_the_clear_density_it_erased_and_gives_it_back_through_the_protect_mask(tmp_path):
    """The shipped tightTarget removes a lipid beside the molecule (its target keeps only modelled atoms): the run
    says so with the lipid's position in A, --erasedMap writes a mask around it and nowhere else, and that mask given
    back with --protectMask keeps the lipid; without the lipid nothing is reported (the contours' rim is not)."""
    import json
    (h1, h2), grid, centre, molecule = _pseudo_halves_with_lipid()
    paths = [write_map(tmp_path / f"h{i}.mrc", h, grid) for i, h in ((1, h1), (2, h2))]
    out, summary = str(tmp_path / "out.mrc"), str(tmp_path / "out.json")
    assert main(["-i", paths[0], "-i2", paths[1], "-o", out, "--erasedMap", "--summaryJson", summary, "--quiet"]) == 0
    run = json.load(open(summary))
    assert 0.8 < run["retention"] < 0.95, run
    assert len(run["missing_regions"]) == 1, run
    region = run["missing_regions"][0]
    assert np.linalg.norm(np.array(region["voxel_xyz"]) - np.array(centre[::-1])) < 2, (region, centre)
    assert 400 < region["volume_A3"] < 2000 and region["strength_sd"] > 3, region
    position = np.array(region["voxel_xyz"]) * grid.voxel_size[0]   # origin 0: voxel (x, y, z) times 1.05 A
    assert any("missing" in n and "(%.0f, %.0f, %.0f) A" % tuple(position) in n for n in run["notes"]), run["notes"]
    erased, erased_grid = read_map(str(tmp_path / "out_erased.mrc"))
    assert erased_grid.shape == grid.shape and erased_grid.origin == pytest.approx(grid.origin)
    assert erased[centre] == pytest.approx(1.0) and erased.min() >= 0 and erased.max() <= 1
    assert (erased > 0).mean() < 0.01 and (erased[molecule] > 0.5).mean() < 0.01, (erased[molecule] > 0.5).mean()
    processed = read_map(out)[0]

    kept = str(tmp_path / "kept.mrc")
    assert main(["-i", paths[0], "-i2", paths[1], "-o", kept, "--protectMask", str(tmp_path / "out_erased.mrc"),
                 "--summaryJson", str(tmp_path / "kept.json"), "--quiet"]) == 0
    again = json.load(open(tmp_path / "kept.json"))
    assert again["missing_regions"] == [] and again["retention"] > run["retention"], again
    contrast = [m[centre] / np.percentile(m[molecule], 90) for m in (0.5 * (h1 + h2), processed, read_map(kept)[0])]
    # at the lipid's centre, against the molecule's 90th percentile: 0.19 in the input, 0.12 in the first output
    # (measured), back to 0.32 (the protect mask blends the input in on the output's scale)
    assert contrast[1] < 0.7 * contrast[0] and contrast[2] > max(contrast[0], 2 * contrast[1]), contrast

    from deepemhancer.api import EnhanceOptions, enhance
    (p1, p2), _, _, _ = _pseudo_halves_with_lipid(lipid=False)
    plain = enhance(p1, grid.voxel_size, half2=p2, options=EnhanceOptions(progress=False)).erased
    assert plain.regions == [] and 0.8 < plain.retention < 0.95, plain


def test_erased_density_check_of_an_empty_output_a_flat_input_and_a_users_mask():
    """An empty output shows nothing (retention 0, not the 100 % a tie of equal voxels would give); a flat input
    has nothing to lose; with a user's mask density outside it does not count."""
    from deepemhancer.erased import find_erased
    (h1, h2), grid, centre, _ = _pseudo_halves_with_lipid()
    given = 0.5 * (h1 + h2)
    empty = find_erased(given, np.zeros_like(given), grid.voxel_size, with_mask=True)
    assert empty.retention == 0.0 and empty.regions and "missing" in empty.note(grid.voxel_size)
    flat = find_erased(np.ones_like(given), given, grid.voxel_size)
    assert np.isnan(flat.retention) and flat.regions == [] and flat.note(grid.voxel_size) is None
    # the output lacks only the lipid: reported without a mask, not with a mask that leaves the lipid out
    without_lipid = given.copy()
    zone = gaussian_blob(given.shape, centre, 4 / grid.voxel_size[0]) > 0.05
    without_lipid[zone] = np.median(given)
    assert [r for r in find_erased(given, without_lipid, grid.voxel_size).regions
            if np.linalg.norm(np.array(r.centre) - np.array(centre[::-1])) < 3]
    within = ~ndimage.binary_dilation(zone, iterations=3)
    assert find_erased(given, without_lipid, grid.voxel_size, within=within).regions == []
