"""Models: Keras weights + a metadata file + a model card, and the registry that finds them.

A model of kind ``K`` is two files in one folder::

    deepemhancer_K.weights.h5   Keras 3 weights of deepemhancer.network.build_unet(architecture)
    deepemhancer_K.json         ModelMetadata: architecture, working voxel size, cube, stride, normalisation,
                                training provenance, version

Kinds are the original's: ``tightTarget`` (default), ``wideTarget``, ``highRes`` and ``masked`` (binary-mask
normalisation). Official DeepEMhancer checkpoints ``deepEMhancer_K.hd5`` are read too (see :mod:`.legacy`).

Where models are looked for, first hit wins: ``--deepLearningModelPath`` (file or folder), the folder in
``$DEEPEMHANCER_MODELS_DIR``, the models shipped inside this package, then the original's default folder
``~/.local/share/deepEMhancerModels/production_checkpoints``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

from .. import __version__
from ..errors import InputError, ModelNotFoundError

KINDS = ("tightTarget", "wideTarget", "highRes", "masked")
PROCESSING_TYPES = ("tightTarget", "wideTarget", "highRes")
MODELS_DIR_ENV = "DEEPEMHANCER_MODELS_DIR"
PACKAGE_MODELS_DIR = os.path.dirname(os.path.abspath(__file__))
ORIGINAL_MODELS_DIR = os.path.expanduser("~/.local/share/deepEMhancerModels/production_checkpoints")
INSTALL_HINT = ("Install models with `scipion3 installb deepemhancerModels` (Scipion), reinstall this package (the "
                "shipped models live in deepemhancer/models/), point $DEEPEMHANCER_MODELS_DIR or "
                "--deepLearningModelPath at a folder holding deepemhancer_<kind>.json + .weights.h5, train one with "
                "`deepemhancer-train`, or fetch the official checkpoints with `deepemhancer --download` (internet).")


def _positive_number(value) -> bool:
    """A finite number above 0 (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@dataclass
class ModelMetadata:
    """Everything inference needs to know about a model, stored next to its weights."""

    kind: str
    architecture: dict
    voxel_size: float = 1.0
    cube_size: int = 64                   # the original tiling's cube and stride
    stride: int = 16
    fast_cube: int | None = None          # the fast tiling's cube and stride (default: cube_size, half of it)
    fast_stride: int | None = None
    normalization: str = "noise"          # "noise": noise mean 0 / SD 0.1; "mask": binary-mask normalisation
    input_gain: str | None = None         # "envelope_p99": the map is divided by normalize.signal_gain first
    keras_backend: str = ""
    version: str = __version__
    description: str = ""
    training: dict = field(default_factory=dict)
    selfcheck: dict = field(default_factory=dict)   # output on the built-in map (deepemhancer.selfcheck)
    # {"x0", "power", "fitted_on"} of deepemhancer.confidence for this model (benchmarks/benchmark_confidence.py
    # --fit-calibration --store); empty: the defaults there
    confidence_calibration: dict = field(default_factory=dict)
    format: str = "deepemhancer-keras3"

    def tiling_plan(self, mode: str):
        """The :class:`~deepemhancer.tiling.TilingPlan` of tiling ``mode`` ("fast" or "original") for this model."""
        from ..tiling import TilingPlan
        if mode == "original":
            return TilingPlan.for_mode(mode, cube=self.cube_size, stride=self.stride)
        return TilingPlan.for_mode(mode, cube=self.fast_cube or self.cube_size, stride=self.fast_stride)

    def problem(self) -> str | None:
        """What makes this metadata unusable (one line), or None."""
        from ..network import UNetConfig
        try:
            config = UNetConfig.from_dict(self.architecture)
            if not config.filters or any(int(f) < 1 for f in config.filters):
                return f"architecture filters must be positive integers, got {list(config.filters)}"
        except (TypeError, ValueError) as exc:
            return f"invalid architecture {self.architecture!r} ({exc})"
        if self.kind not in KINDS:
            return f"unknown kind {self.kind!r} (one of {', '.join(KINDS)})"
        for name in ("voxel_size", "cube_size", "stride"):
            value = getattr(self, name)
            if not _positive_number(value):
                return f"{name} must be a positive number, got {value!r}"
        for name in ("cube_size", "fast_cube"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value % config.cube_multiple):
                return (f"{name} {value!r} is not a multiple of {config.cube_multiple} (2 ** the network's depth "
                        f"{config.depth})")
        for cube, stride, names in ((self.cube_size, self.stride, "cube_size/stride"),
                                    (self.fast_cube, self.fast_stride, "fast_cube/fast_stride")):
            if stride is not None and cube is not None and not (isinstance(stride, int) and 0 < stride <= cube):
                return f"{names}: the stride must be an integer in 1..cube, got {stride!r} for cube {cube!r}"
        if self.normalization not in ("noise", "mask"):
            return f"normalization must be 'noise' or 'mask', got {self.normalization!r}"
        calibration = self.confidence_calibration
        if calibration and not all(_positive_number(calibration.get(k)) for k in ("x0", "power")):
            return f"confidence_calibration needs positive numbers x0 and power, got {calibration!r}"
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelMetadata":
        known = set(cls.__dataclass_fields__)
        missing = {"kind", "architecture"} - set(d)
        if missing:
            raise InputError(f"model metadata lacks {sorted(missing)}; it is not a deepemhancer model file.")
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class LoadedModel:
    """A ready network with its metadata and the file it came from."""

    model: object                         # a keras.Model, or a runtime_openvino.OpenVINONetwork
    metadata: ModelMetadata
    path: str
    replicas: int = 1
    runtime: str = "keras"                # "openvino", or the Keras backend that runs the model

    def predict(self, batch):
        """Network output for a float32 batch ``(b, c, c, c, 1)``, as a numpy array."""
        import numpy as np
        if self.runtime == "openvino":
            return self.model.predict(batch)
        if self.replicas > 1:  # built under a MirroredStrategy: predict() splits the batch over the GPUs
            return np.asarray(self.model.predict(batch, batch_size=len(batch), verbose=0))
        return np.asarray(self.model.predict_on_batch(batch))


def model_file_names(kind: str) -> tuple[str, str]:
    return f"deepemhancer_{kind}.json", f"deepemhancer_{kind}.weights.h5"


def save_model(model, metadata: ModelMetadata, directory: str, kind: str | None = None) -> str:
    """Write ``model``'s weights and ``metadata`` into ``directory``; returns the metadata file path."""
    import keras
    kind = kind or metadata.kind
    metadata.kind = kind
    metadata.keras_backend = metadata.keras_backend or keras.backend.backend()
    os.makedirs(directory, exist_ok=True)
    json_name, weights_name = model_file_names(kind)
    weights_path = os.path.join(directory, weights_name)
    tmp_weights = os.path.join(directory, f".tmp_{os.getpid()}_{weights_name}")
    model.save_weights(tmp_weights)
    os.replace(tmp_weights, weights_path)
    return write_metadata(metadata, os.path.join(directory, json_name))


def write_metadata(metadata: ModelMetadata, json_path: str) -> str:
    """Write a model's metadata file atomically; returns its path."""
    with open(json_path + ".tmp", "w", encoding="utf-8") as f:
        f.write(metadata.to_json() + "\n")
    os.replace(json_path + ".tmp", json_path)
    return json_path


def search_dirs(model_dir: str | None = None) -> list[str]:
    """Folders searched for models, in order."""
    dirs = [model_dir] if model_dir else []
    if os.environ.get(MODELS_DIR_ENV):
        dirs.append(os.environ[MODELS_DIR_ENV])
    dirs += [PACKAGE_MODELS_DIR, ORIGINAL_MODELS_DIR]
    return dirs


def find_model(kind: str = "tightTarget", model_path: str | None = None) -> str:
    """Resolve a model file for ``kind`` (our ``.json`` or an official ``.hd5``).

    Raises:
        ModelNotFoundError: nothing found; the message lists the folders searched and how to install models.
    """
    if kind not in KINDS:
        raise InputError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if model_path and os.path.isfile(model_path):
        return model_path
    if model_path and not os.path.isdir(model_path):
        raise ModelNotFoundError(f"--deepLearningModelPath {model_path}: no such file or folder. {INSTALL_HINT}")
    dirs = [model_path] if model_path else search_dirs()
    for folder in dirs:
        for name in (model_file_names(kind)[0], f"deepEMhancer_{kind}.hd5"):
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return candidate
    raise ModelNotFoundError(f"no {kind} model found in {', '.join(dirs)}. {INSTALL_HINT}")


def read_metadata(path: str) -> tuple[ModelMetadata, str]:
    """``(metadata, weights file)`` of one of our models, from its ``.json`` (or ``.weights.h5``) path, validated."""
    path = _json_path(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as exc:  # ValueError: JSON errors and binary files (UnicodeDecodeError)
        raise InputError(f"cannot read model metadata {path}: {exc}. A model is deepemhancer_<kind>.json with "
                         f"its .weights.h5 beside it, or an official .hd5 checkpoint.") from exc
    if not isinstance(raw, dict):
        raise InputError(f"model metadata {path} is not a JSON object; it is not a deepemhancer model file.")
    metadata = ModelMetadata.from_dict(raw)
    problem = metadata.problem()
    if problem:
        raise InputError(f"model metadata {path}: {problem}. Re-export or reinstall the model.")
    weights = os.path.join(os.path.dirname(path), model_file_names(metadata.kind)[1])
    if not os.path.isfile(weights):
        weights = path[: -len(".json")] + ".weights.h5"
    if not os.path.isfile(weights):
        raise ModelNotFoundError(f"model metadata {path} has no weights file beside it ({weights}). {INSTALL_HINT}")
    return metadata, weights


def load_model(path: str, gpus: int = 1, runtime: str = "keras") -> LoadedModel:
    """Load a model from our ``.json`` metadata file (weights beside it) or an official ``.hd5`` checkpoint.

    ``runtime="openvino"`` compiles our models for the CPU without importing Keras
    (:mod:`deepemhancer.runtime_openvino`); official checkpoints, whose graphs are arbitrary, always run on Keras.
    With ``gpus > 1`` on the TensorFlow backend the model is built under ``tf.distribute.MirroredStrategy`` so each
    batch is split over the GPUs (other backends use one device).
    """
    legacy = path.endswith((".hd5", ".h5")) and not path.endswith(".weights.h5")
    if runtime == "openvino" and not legacy:
        from .. import runtime_openvino
        metadata, weights = read_metadata(path)
        network = runtime_openvino.load_network(weights, metadata.architecture)
        return LoadedModel(model=network, metadata=metadata, path=_json_path(path), runtime="openvino")
    import keras
    if gpus > 1 and keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        with tf.distribute.MirroredStrategy().scope():
            loaded = load_model(path, gpus=1)
        loaded.replicas = gpus
        return loaded
    if legacy:
        from .legacy import load_legacy_hdf5
        return load_legacy_hdf5(path)
    metadata, weights = read_metadata(path)
    from ..network import UNetConfig, build_unet
    model = build_unet(UNetConfig.from_dict(metadata.architecture))
    try:
        model.load_weights(weights)
    except (ValueError, OSError) as exc:
        raise InputError(f"weights {weights} do not fit the architecture in {path}: {exc}") from exc
    return LoadedModel(model=model, metadata=metadata, path=_json_path(path), runtime=keras.backend.backend())


def _json_path(path: str) -> str:
    return path[: -len(".weights.h5")] + ".json" if path.endswith(".weights.h5") else path
