"""Read the official DeepEMhancer checkpoints (Keras 2 HDF5 ``.hd5``) into Keras 3, without executing their code.

An official checkpoint stores the whole graph as JSON (root attribute ``model_config``), the weights under
``model_weights/<layer>/``, and, in DeepEMhancer's own groups, Python source (``code/custom_objects``,
``code/normFun``) that the original program ``exec``s, plus the cube size and stride (``configParams``). We never run
that code: the graph is rebuilt layer by layer from a whitelist of layer types with their numeric parameters only,
GroupNormalization (keras_contrib semantics: per-group statistics, per-channel scale and shift) maps onto Keras 3's,
and a layer we do not know (``Lambda`` in particular, which would hide code) is refused with a clear error.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from ..errors import InputError
from . import LoadedModel, ModelMetadata

_KINDS_IN_NAME = re.compile(r"deepEMhancer_(tightTarget|wideTarget|highRes|masked)", re.I)


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _decode(value[()])
    return value


def _pick(config: dict, *keys: str) -> dict:
    return {k: config[k] for k in keys if k in config}


def _activation(config: dict):
    act = config.get("activation", "linear")
    if isinstance(act, dict):  # Keras 2 may serialise a built-in activation as {"class_name": ..., "config": ...}
        act = act.get("config", {}).get("name", act.get("class_name", "linear"))
    if act not in ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "swish", "gelu"):
        raise InputError(f"unsupported activation {act!r} in the checkpoint")
    return act


def _make_layer(class_name: str, config: dict, name: str):
    from keras import layers
    conv_keys = ("filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias")
    if class_name == "Conv3D":
        return layers.Conv3D(**_pick(config, *conv_keys), activation=_activation(config), name=name)
    if class_name in ("Conv3DTranspose", "Deconvolution3D"):
        return layers.Conv3DTranspose(**_pick(config, "filters", "kernel_size", "strides", "padding", "use_bias"),
                                      activation=_activation(config), name=name)
    if class_name == "GroupNormalization":
        axis = config.get("axis", -1)
        return layers.GroupNormalization(groups=int(config.get("groups", 32)), axis=axis,
                                         epsilon=float(config.get("epsilon", 1e-5)),
                                         center=config.get("center", True), scale=config.get("scale", True), name=name)
    if class_name == "BatchNormalization":
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) else axis
        return layers.BatchNormalization(axis=axis, epsilon=float(config.get("epsilon", 1e-3)),
                                         momentum=float(config.get("momentum", 0.99)),
                                         center=config.get("center", True), scale=config.get("scale", True), name=name)
    if class_name == "PReLU":
        return layers.PReLU(shared_axes=config.get("shared_axes"), name=name)
    if class_name == "LeakyReLU":
        return layers.LeakyReLU(negative_slope=float(config.get("alpha", config.get("negative_slope", 0.3))),
                                name=name)
    if class_name == "ReLU":
        return layers.ReLU(name=name)
    if class_name == "Activation":
        return layers.Activation(_activation(config), name=name)
    if class_name == "Concatenate":
        return layers.Concatenate(axis=config.get("axis", -1), name=name)
    if class_name == "Add":
        return layers.Add(name=name)
    if class_name == "Multiply":
        return layers.Multiply(name=name)
    if class_name == "MaxPooling3D":
        return layers.MaxPooling3D(**_pick(config, "pool_size", "strides", "padding"), name=name)
    if class_name == "AveragePooling3D":
        return layers.AveragePooling3D(**_pick(config, "pool_size", "strides", "padding"), name=name)
    if class_name == "UpSampling3D":
        return layers.UpSampling3D(size=config.get("size", 2), name=name)
    if class_name in ("Dropout", "SpatialDropout3D", "GaussianNoise", "GaussianDropout"):
        return layers.Identity(name=name)  # inactive at inference
    if class_name == "ZeroPadding3D":
        return layers.ZeroPadding3D(padding=config.get("padding", 1), name=name)
    if class_name == "Cropping3D":
        return layers.Cropping3D(cropping=config.get("cropping", 1), name=name)
    raise InputError(f"the checkpoint uses a layer of type {class_name!r} ({name}) that this loader does not rebuild; "
                     f"only plain U-Net layers are read (code-carrying layers such as Lambda are refused on purpose).")


def _inbound(node) -> list[tuple[str, int, int]]:
    """Input references of one inbound node, in Keras 2's list form or Keras 2.13+'s dict form."""
    refs = []
    if isinstance(node, dict):  # {"args": [...], "kwargs": {...}} with keras_history entries
        def walk(obj):
            if isinstance(obj, dict) and "config" in obj and "keras_history" in obj.get("config", {}):
                name, node_index, tensor_index = obj["config"]["keras_history"]
                refs.append((name, node_index, tensor_index))
            elif isinstance(obj, (list, tuple)):
                for o in obj:
                    walk(o)
            elif isinstance(obj, dict):
                for o in obj.values():
                    walk(o)
        walk(node.get("args", []))
        return refs
    for entry in node:
        refs.append((entry[0], entry[1], entry[2]))
    return refs


def build_from_keras2_config(model_config: dict):
    """Rebuild a Keras 3 functional model from a Keras 2 ``model_config`` dict (no code executed)."""
    import keras
    if model_config.get("class_name") not in ("Model", "Functional"):
        raise InputError(f"the checkpoint holds a {model_config.get('class_name')} model; only functional U-Nets "
                         f"are supported.")
    cfg = model_config["config"]
    tensors: dict[str, object] = {}
    inputs = []
    for layer_cfg in cfg["layers"]:
        class_name, name, lcfg = layer_cfg["class_name"], layer_cfg.get("name", layer_cfg["config"]["name"]), \
            layer_cfg["config"]
        if class_name == "InputLayer":
            shape = lcfg.get("batch_input_shape") or lcfg.get("batch_shape")
            tensors[name] = keras.Input(shape=tuple(shape[1:]), name=name)
            inputs.append(tensors[name])
            continue
        nodes = layer_cfg.get("inbound_nodes", [])
        if len(nodes) != 1:
            raise InputError(f"layer {name} is used {len(nodes)} times; shared layers are not supported.")
        refs = _inbound(nodes[0])
        args = [tensors[r[0]] for r in refs]
        layer = _make_layer(class_name, lcfg, name)
        tensors[name] = layer(args if len(args) > 1 or class_name in ("Concatenate", "Add", "Multiply")
                              else args[0])
    outputs = [tensors[o[0]] for o in cfg["output_layers"]]
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                       name=cfg.get("name", "legacy"))


def _load_weights(model, weights_group) -> None:
    names = [_decode(n) for n in weights_group.attrs.get("layer_names", [])]
    by_name = {layer.name: layer for layer in model.layers}
    for layer_name in names:
        group = weights_group[layer_name]
        weight_names = [_decode(n) for n in group.attrs.get("weight_names", [])]
        if not weight_names:
            continue
        if layer_name not in by_name:
            raise InputError(f"the checkpoint has weights for an unknown layer {layer_name}.")
        values = [np.asarray(group[w]) for w in weight_names]
        layer = by_name[layer_name]
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise InputError(f"weights of layer {layer_name} have shapes {[v.shape for v in values]}, expected "
                             f"{expected}: the checkpoint does not match its own graph.")
        layer.set_weights(values)


def load_legacy_hdf5(path: str) -> LoadedModel:
    """Load an official DeepEMhancer ``.hd5`` (or any Keras 2 HDF5 functional U-Net) as a :class:`LoadedModel`."""
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path} is not a readable HDF5 checkpoint: {exc}") from exc
    with f:
        if "model_config" not in f.attrs:
            raise InputError(f"{path} has no model_config: it is not a full Keras 2 model file (a weights-only file "
                             f"needs its architecture; give our .json model instead).")
        model_config = json.loads(_decode(f.attrs["model_config"]))
        model = build_from_keras2_config(model_config)
        _load_weights(model, f["model_weights"] if "model_weights" in f else f)
        params = f["configParams"] if "configParams" in f else {}
        cube = int(np.asarray(params["NNET_INPUT_SIZE"])) if "NNET_INPUT_SIZE" in params else 64
        stride = int(np.asarray(params["NNET_INPUT_STRIDE"])) if "NNET_INPUT_STRIDE" in params else cube // 4
        keras_version = _decode(f.attrs.get("keras_version", "unknown"))
    match = _KINDS_IN_NAME.search(os.path.basename(path))
    kind = match.group(1) if match else "tightTarget"
    kind = {k.lower(): k for k in ("tightTarget", "wideTarget", "highRes", "masked")}[kind.lower()]
    metadata = ModelMetadata(kind=kind, architecture={}, voxel_size=1.0, cube_size=cube, stride=stride,
                             normalization="mask" if kind == "masked" else "noise",
                             description=f"official DeepEMhancer checkpoint {os.path.basename(path)}",
                             training={"provenance": "Sanchez-Garcia et al. 2021, Zenodo 7432763",
                                       "keras_version": keras_version}, format="keras2-hdf5")
    return LoadedModel(model=model, metadata=metadata, path=path)
