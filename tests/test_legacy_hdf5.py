"""Official-format checkpoints: a Keras-2 HDF5 U-Net (made with tf_keras) loads in Keras 3 without running its code."""

import os
import subprocess
import sys

import numpy as np
import pytest

from deepemhancer.errors import InputError
from deepemhancer.models import find_model, load_model

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def legacy_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("official")
    path, ref = folder / "deepEMhancer_wideTarget.hd5", folder / "ref.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    subprocess.run([sys.executable, os.path.join(HERE, "make_legacy_hdf5.py"), str(path), str(ref)], check=True,
                   env=env, cwd=folder, capture_output=True, timeout=600)
    return folder, path, np.load(ref)


def test_legacy_checkpoint_predicts_like_keras2_and_never_runs_embedded_code(legacy_checkpoint, monkeypatch):
    folder, path, ref = legacy_checkpoint
    monkeypatch.chdir(folder)
    assert find_model("wideTarget", str(folder)) == str(path)  # the official file name is found in a folder
    loaded = load_model(str(path))
    assert loaded.metadata.kind == "wideTarget"
    assert (loaded.metadata.cube_size, loaded.metadata.stride) == (16, 4)
    np.testing.assert_allclose(loaded.predict(ref["x"]), ref["y"], rtol=1e-4, atol=1e-5)
    assert not os.path.exists(folder / "EXECUTED_MARKER")


def test_code_carrying_layers_are_refused(tmp_path):
    import h5py
    import json
    path = tmp_path / "deepEMhancer_tightTarget.hd5"
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_input_shape": [None, 8, 8, 8, 1]},
         "inbound_nodes": []},
        {"class_name": "Lambda", "name": "evil", "config": {"name": "evil", "function": "..."},
         "inbound_nodes": [[["in", 0, 0, {}]]]}],
        "input_layers": [["in", 0, 0]], "output_layers": [["evil", 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(InputError, match="Lambda"):
        load_model(str(path))
