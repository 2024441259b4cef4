"""The OpenVINO CPU runtime: same predictions as the Keras model, cache keyed by the weights, clear errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from deepemhancer import cli, devices, runtime_openvino
from deepemhancer.errors import InputError
from deepemhancer.io import read_map
from deepemhancer.models import KINDS, ModelMetadata, find_model, load_model, save_model
from deepemhancer.network import UNetConfig, build_unet

from conftest import data_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _real_cube(side=64):
    """A cube of the real EMD-3488 map, scaled like the network's normalised input."""
    data, _ = read_map(data_path("emd_3488.mrc"))
    start = [max(0, (n - side) // 2) for n in data.shape]
    cube = np.zeros((side,) * 3, np.float32)
    crop = data[start[0]:start[0] + side, start[1]:start[1] + side, start[2]:start[2] + side]
    cube[:crop.shape[0], :crop.shape[1], :crop.shape[2]] = crop
    return (cube / np.percentile(np.abs(cube), 99.5))[None, ..., None]


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_models_predict_as_keras(kind):
    path = find_model(kind)
    keras_model = load_model(path, runtime="keras")
    ov_model = load_model(path, runtime="openvino")
    assert ov_model.runtime == "openvino" and ov_model.metadata == keras_model.metadata
    batch = np.concatenate([_real_cube(), np.random.default_rng(1).normal(0, 0.1, (1, 64, 64, 64, 1))]
                           ).astype(np.float32)
    expected = keras_model.predict(batch)
    got = ov_model.predict(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    peak = np.abs(expected).max()
    assert peak > 0.01
    assert np.abs(got - expected).max() <= 1e-5 * peak


def test_group_normalised_and_non_cubic_inputs_predict_as_keras(tmp_path):
    import keras
    keras.utils.set_random_seed(3)
    config = UNetConfig(filters=(4, 8), convs_per_block=2, groups=2, norm_layer="group")
    model = build_unet(config)
    path = save_model(model, ModelMetadata(kind="wideTarget", architecture=config.to_dict(), cube_size=32,
                                           stride=8), str(tmp_path))
    batch = np.random.default_rng(0).normal(0, 1, (2, 16, 24, 32, 1)).astype(np.float32)
    got = load_model(path, runtime="openvino").predict(batch)
    expected = np.asarray(model.predict_on_batch(batch))
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_cache_is_keyed_by_the_weights_and_rebuilt_when_they_change(tmp_path):
    import keras
    config = UNetConfig(filters=(4, 8), convs_per_block=1, groups=2, norm_layer="none")
    cache = tmp_path / "cache"
    models = tmp_path / "models"
    keras.utils.set_random_seed(1)
    first = build_unet(config)
    path = save_model(first, ModelMetadata(kind="highRes", architecture=config.to_dict(), cube_size=32, stride=8),
                      str(models))
    weights = path.replace(".json", ".weights.h5")
    x = np.random.default_rng(0).normal(0, 1, (1, 16, 16, 16, 1)).astype(np.float32)

    net = runtime_openvino.load_network(weights, config.to_dict(), threads=1, cache_dir=str(cache))
    assert net.source.startswith("built") and len(os.listdir(cache)) == 1
    again = runtime_openvino.load_network(weights, config.to_dict(), threads=1, cache_dir=str(cache))
    assert again.source.startswith("cache")
    np.testing.assert_array_equal(net.predict(x), again.predict(x))

    keras.utils.set_random_seed(2)  # new weights under the same file name: a new entry, the new network
    second = build_unet(config)
    save_model(second, ModelMetadata(kind="highRes", architecture=config.to_dict(), cube_size=32, stride=8),
               str(models))
    rebuilt = runtime_openvino.load_network(weights, config.to_dict(), threads=1, cache_dir=str(cache))
    assert rebuilt.source.startswith("built") and len(os.listdir(cache)) == 2
    expected = np.asarray(second.predict_on_batch(x))
    assert np.abs(rebuilt.predict(x) - expected).max() <= 1e-5 * np.abs(expected).max()
    assert np.abs(rebuilt.predict(x) - net.predict(x)).max() > 1e-3


def test_weights_that_do_not_fit_the_architecture_are_an_input_error(tmp_path):
    config = UNetConfig(filters=(4, 8), convs_per_block=1, groups=2, norm_layer="none")
    path = save_model(build_unet(config), ModelMetadata(kind="highRes", architecture=config.to_dict(),
                                                        cube_size=32, stride=8), str(tmp_path))
    wider = dict(config.to_dict(), filters=[8, 16])
    with pytest.raises(InputError, match="do not fit"):
        runtime_openvino.load_network(path.replace(".json", ".weights.h5"), wider, cache_dir=str(tmp_path / "c"))


def test_weights_of_a_deeper_network_are_an_input_error_not_a_silently_shallower_one(tmp_path):
    # two convolutions per block hold every layer a one-convolution network needs, with the same shapes: without
    # the check the shallower graph would load and compute something else
    config = UNetConfig(filters=(4, 8), convs_per_block=2, groups=2, norm_layer="none")
    path = save_model(build_unet(config), ModelMetadata(kind="highRes", architecture=config.to_dict(),
                                                        cube_size=32, stride=8), str(tmp_path))
    shallower = dict(config.to_dict(), convs_per_block=1)
    with pytest.raises(InputError, match=r"layers this architecture does not use \(bottleneck_1_conv"):
        runtime_openvino.load_network(path.replace(".json", ".weights.h5"), shallower, cache_dir=str(tmp_path / "c"))


def test_missing_runtime_is_a_clear_error_and_auto_falls_back_to_keras(tmp_path, monkeypatch, capsys):
    real_installed = devices.installed
    monkeypatch.setattr(devices, "installed", lambda name: name != "openvino" and real_installed(name))
    environ = {"KERAS_BACKEND": "torch"}
    assert devices.configure("-1", "auto", environ=environ)[0] == "torch"
    with pytest.raises(InputError, match="pip install openvino"):
        devices.configure("-1", "openvino", environ=dict(environ))
    code = cli.main(["-i", data_path("emd_3488.mrc"), "-o", str(tmp_path / "out.mrc"), "-g", "-1",
                     "--backend", "openvino", "--quiet"])
    assert code == 2 and "pip install openvino" in capsys.readouterr().err
    assert not (tmp_path / "out.mrc").exists()


def test_threads_follow_the_job_allocation():
    assert runtime_openvino.cpu_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert runtime_openvino.cpu_threads({"SLURM_CPUS_PER_TASK": "5"}) == 5
    assert runtime_openvino.cpu_threads({}) == len(os.sched_getaffinity(0))


def test_cpu_command_imports_no_deep_learning_framework(tmp_path):
    out = tmp_path / "out.mrc"
    code = ("import sys; from deepemhancer.cli import main; rc = main(['-i', %r, '-o', %r, '-g', '-1', '--quiet']);"
            "print(rc, *[m for m in ('keras', 'torch', 'tensorflow', 'jax') if m in sys.modules])"
            % (data_path("emd_3488.mrc"), str(out)))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.stdout.split() == ["0"], done.stdout + done.stderr
    assert read_map(str(out))[0].std() > 0
