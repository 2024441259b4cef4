"""`deepemhancer --selfcheck` on a sound environment and on broken ones, and the run summary JSON."""

import json
import os
import shutil

import pytest

from deepemhancer import selfcheck
from deepemhancer.cli import main
from deepemhancer.models import PACKAGE_MODELS_DIR, read_metadata

DATA = os.path.join(os.path.dirname(__file__), "data")


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_sound_environment_passes_with_every_line_ok(capsys):
    assert main(["--selfcheck", "-g", "-1"]) == 0
    out = _lines(capsys)
    assert out[0] == "deepemhancer self-check" and out[-1] == "self-check: all ok"
    assert not [line for line in out if "PROBLEM" in line]
    assert any(line.strip().startswith("ok       runtime: --backend auto -> OpenVINO") for line in out)
    for kind in ("tightTarget", "wideTarget", "highRes", "masked"):
        assert any(f"model {kind}:" in line and "sha256" in line for line in out)
    end = [line for line in out if "end-to-end" in line][0]
    assert "matches the reference" in end                 # OpenVINO reproduces what Keras stored


def test_shipped_models_store_their_reference_output():
    for kind in ("tightTarget", "wideTarget", "highRes", "masked"):
        metadata, _ = read_metadata(os.path.join(PACKAGE_MODELS_DIR, f"deepemhancer_{kind}.json"))
        assert len(metadata.selfcheck["probes"]) == selfcheck.PROBES and metadata.selfcheck["peak"] > 0


@pytest.fixture
def model_copy(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in os.listdir(PACKAGE_MODELS_DIR):
        if name.startswith("deepemhancer_") and name.endswith((".json", ".weights.h5")):
            shutil.copy(os.path.join(PACKAGE_MODELS_DIR, name), folder / name)
    return folder


def test_a_removed_model_file_is_a_problem_with_its_fix(model_copy, capsys):
    os.remove(model_copy / "deepemhancer_wideTarget.weights.h5")
    assert main(["--selfcheck", "-g", "-1", "--quick", "--deepLearningModelPath", str(model_copy)]) == 2
    out = _lines(capsys)
    problem = [line for line in out if "PROBLEM" in line]
    assert len(problem) == 1 and "model wideTarget" in problem[0] and "no weights file" in problem[0]
    assert "-> fix: scipion3 installb deepemhancerModels" in problem[0]
    assert out[-1] == "self-check: 1 problem(s)"


def test_wrong_weights_fail_the_end_to_end_comparison(model_copy, capsys):
    # the tightTarget metadata (and its stored reference) with weights of the same architecture that compute
    # something else: every weight scaled by 0.9, as a stale or half-written retrained file would
    import h5py
    with h5py.File(model_copy / "deepemhancer_tightTarget.weights.h5", "r+") as f:
        datasets = []
        f.visititems(lambda _, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
        for dataset in datasets:
            dataset[...] = 0.9 * dataset[()]
    assert main(["--selfcheck", "-g", "-1", "--deepLearningModelPath",
                 str(model_copy / "deepemhancer_tightTarget.json")]) == 2
    end = [line for line in _lines(capsys) if "end-to-end" in line][0]
    assert "PROBLEM" in end and "differs from the reference" in end and "-> fix:" in end


def test_weights_of_another_architecture_are_a_problem(model_copy, capsys):
    # the shipped kinds have two or three convolutions per block: weights of the other depth cannot fill the
    # tightTarget network (three-convolution weights hold every layer of a two-convolution one, and more)
    def convs(kind):
        return json.loads((model_copy / f"deepemhancer_{kind}.json").read_text())["architecture"]["convs_per_block"]
    other = next(k for k in ("highRes", "wideTarget", "masked") if convs(k) != convs("tightTarget"))
    shutil.copy(model_copy / f"deepemhancer_{other}.weights.h5", model_copy / "deepemhancer_tightTarget.weights.h5")
    assert main(["--selfcheck", "-g", "-1", "--deepLearningModelPath",
                 str(model_copy / "deepemhancer_tightTarget.json")]) == 2
    end = [line for line in _lines(capsys) if "end-to-end" in line][0]
    assert "PROBLEM" in end and "fit the architecture in the model's metadata" in end and "down0_2_conv" in end


def test_a_missing_backend_is_a_problem_with_its_fix(monkeypatch, capsys):
    from deepemhancer import devices
    real = devices.installed
    monkeypatch.setattr(devices, "installed", lambda name: False if name == "torch" else real(name))
    assert selfcheck.run("-1", "torch", quick=True) == 2
    out = _lines(capsys)
    runtime = [line for line in out if "runtime:" in line][0]
    assert "PROBLEM" in runtime and "not installed" in runtime and "pip install torch" in runtime


def test_summary_json_describes_the_run(tmp_path):
    out, summary = tmp_path / "out.mrc", tmp_path / "run.json"
    args = ["-i", os.path.join(DATA, "emd_3488.mrc"), "-o", str(out), "-g", "-1", "--quiet",
            "--summaryJson", str(summary)]
    assert main(args) == 0
    run = json.loads(summary.read_text())
    assert run["model"]["kind"] == "tightTarget" and len(run["model"]["weights_sha256"]) == 64
    assert run["runtime"] == "openvino" and run["tiling"] == "fast"
    assert 1 <= run["cubes_evaluated"] <= run["cubes_total"] and run["seconds"] > 0
    before = summary.read_text()
    other = [a if a != str(out) else str(tmp_path / "other.mrc") for a in args]
    assert main(other) == 2                                 # the summary exists and there is no --overwrite
    assert summary.read_text() == before and not (tmp_path / "other.mrc").exists()
    assert main(args + ["--overwrite"]) == 0
