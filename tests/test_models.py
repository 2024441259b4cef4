"""Models: weights + metadata, the registry's search order and its errors."""

import json
import os
import shutil

import numpy as np
import pytest

from deepemhancer.errors import InputError, ModelNotFoundError
from deepemhancer.models import (MODELS_DIR_ENV, PACKAGE_MODELS_DIR, ModelMetadata, find_model, load_model,
                                 save_model)
from deepemhancer.network import UNetConfig, build_unet


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    config = UNetConfig(filters=(4, 8), convs_per_block=1, groups=2)
    model = build_unet(config)
    meta = ModelMetadata(kind="wideTarget", architecture=config.to_dict(), cube_size=32, stride=8,
                         training={"epochs": 0})
    path = save_model(model, meta, str(tmp_path))
    assert os.path.basename(path) == "deepemhancer_wideTarget.json"
    stored = json.load(open(path))
    assert stored["architecture"]["filters"] == [4, 8] and stored["voxel_size"] == 1.0
    assert stored["keras_backend"] and stored["version"]
    loaded = load_model(path)
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), np.asarray(model.predict_on_batch(x)), rtol=1e-5, atol=1e-6)
    assert loaded.metadata.cube_size == 32
    # the weights file also resolves to the same model
    assert load_model(str(tmp_path / "deepemhancer_wideTarget.weights.h5")).metadata.kind == "wideTarget"


def test_search_order_path_then_env_then_package(tmp_path, monkeypatch, small_models_dir):
    monkeypatch.setenv(MODELS_DIR_ENV, small_models_dir)
    assert find_model("highRes") == os.path.join(small_models_dir, "deepemhancer_highRes.json")
    other = tmp_path / "other"
    shutil.copytree(small_models_dir, other)
    assert find_model("highRes", str(other)) == str(other / "deepemhancer_highRes.json")
    single = str(other / "deepemhancer_masked.json")
    assert find_model("tightTarget", single) == single


def test_missing_model_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="installb deepemhancerModels"):
        find_model("wideTarget", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="no such file"):
        find_model("tightTarget", str(tmp_path / "nope"))
    with pytest.raises(InputError, match="unknown model kind"):
        find_model("superRes")


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path, small_models_dir):
    shutil.copytree(small_models_dir, tmp_path / "m")
    path = tmp_path / "m" / "deepemhancer_tightTarget.json"
    meta = json.load(open(path))
    meta["architecture"]["filters"] = [8, 16, 32]
    json.dump(meta, open(path, "w"))
    with pytest.raises(InputError, match="do not fit"):
        load_model(str(path))
    json.dump({"voxel_size": 1.0}, open(path, "w"))
    with pytest.raises(InputError, match="not a deepemhancer model"):
        load_model(str(path))


def test_shipped_models_load_when_present():
    """Every model shipped in the package loads and has complete metadata."""
    shipped = [f for f in os.listdir(PACKAGE_MODELS_DIR) if f.startswith("deepemhancer_") and f.endswith(".json")]
    assert len(shipped) == 4                      # tightTarget, wideTarget, highRes, masked (beside measured.json)
    for name in shipped:
        loaded = load_model(os.path.join(PACKAGE_MODELS_DIR, name))
        assert loaded.metadata.voxel_size > 0 and loaded.metadata.cube_size % 8 == 0
        assert loaded.metadata.training, f"{name} lacks its training provenance"


def test_quoted_figures_are_generated_from_the_shipped_models_evaluations():
    """README's model paragraph and the Scipion form's help quote deepemhancer/models/measured.json, which
    benchmarks/shipped_numbers.py computes from the evaluations that each shipped model's metadata names: after a
    model is shipped, a stale figure fails here until the script is rerun."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("shipped_numbers",
                                                  os.path.join(root, "benchmarks", "shipped_numbers.py"))
    shipped_numbers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shipped_numbers)
    for kind, roles in shipped_numbers.evaluations().items():
        assert roles.get("main"), f"{kind}: its metadata names no evaluation"
    assert shipped_numbers.main(["--check"]) == 0
