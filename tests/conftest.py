"""Shared fixtures of the engine tests: real data files shipped in tests/data and small real Keras models."""

import os
import shutil
import tempfile

# Keras reads its backend once, at import: choose it before any test imports keras (torch is the fast one on CPU;
# run `KERAS_BACKEND=tensorflow pytest` to test the other backend).
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The OpenVINO runtime caches compiled networks; tests keep theirs out of the user's ~/.cache.
os.environ.setdefault("DEEPEMHANCER_CACHE_DIR", tempfile.mkdtemp(prefix="deepemhancer-test-cache-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")
SMALL_ARCH = {"filters": (4, 8, 16), "convs_per_block": 1, "groups": 4}


def data_path(name: str) -> str:
    return os.path.join(DATA, name)


@pytest.fixture
def tmp_data(tmp_path):
    """Copy a shipped data file into the test's folder (tests never write next to shipped data)."""
    def copy(name: str) -> str:
        target = tmp_path / name
        shutil.copy(data_path(name), target)
        os.chmod(target, 0o644)
        return str(target)
    return copy


@pytest.fixture(scope="session")
def small_models_dir(tmp_path_factory):
    """A models folder with small real (untrained, seeded) U-Nets of every kind, saved through the registry."""
    import keras

    from deepemhancer.models import KINDS, ModelMetadata, save_model
    from deepemhancer.network import UNetConfig, build_unet

    folder = tmp_path_factory.mktemp("models")
    config = UNetConfig(**SMALL_ARCH)
    for kind in KINDS:
        keras.utils.set_random_seed(7)
        model = build_unet(config)
        meta = ModelMetadata(kind=kind, architecture=config.to_dict(), normalization="mask" if kind == "masked"
                             else "noise", description="untrained test model", training={"provenance": "tests"})
        save_model(model, meta, str(folder), kind)
    return str(folder)


def synthetic_noise_map(shape, rng, noise_mean=0.3, noise_std=0.05):
    return (noise_mean + noise_std * rng.standard_normal(shape)).astype(np.float32)


def gaussian_blob(shape, centre, sigma):
    """A Gaussian of ``sigma`` voxels at ``centre`` (voxel indices), peak 1, float32."""
    idx = np.indices(shape).astype(np.float32)
    return np.exp(-sum((i - c) ** 2 for i, c in zip(idx, centre)) / (2 * sigma ** 2)).astype(np.float32)
