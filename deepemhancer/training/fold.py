"""Turn a group-normalised U-Net into the same U-Net without normalisation layers (``norm_layer="none"``).

Group normalisation rescales every cube by that cube's own statistics, so a voxel's prediction depends on the cube
it was cut into (see :mod:`deepemhancer.network`). Folding freezes each normalisation layer's statistics, measured
on representative cubes, into the convolution before it, the way batch normalisation is folded for deployment:

    GN(conv(x)) = gamma * (conv(x) - mean) / sqrt(var + eps) + beta
               = conv'(x)  with  kernel' = kernel * s,  bias' = (bias - mean) * s + beta,  s = gamma / sqrt(var + eps)

Layers are folded in order, each with its statistics measured in the network whose earlier layers are already
folded, so each layer sees the inputs it will see at inference. ``mean`` and ``var`` are pooled over all cubes
(voxels x channels of the group), not averaged per cube. The folded network is a starting point for fine-tuning,
not an exact copy: the per-cube statistics it replaces really did vary.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..network import UNetConfig, build_unet


def _group_stats(values: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled mean and variance per group of channels of ``values`` ``(n, z, y, x, c)``, expanded to channels."""
    channels = values.shape[-1]
    per_group = values.reshape(-1, groups, channels // groups).astype(np.float64)
    mean = per_group.mean(axis=(0, 2))
    var = per_group.var(axis=(0, 2))
    return np.repeat(mean, channels // groups), np.repeat(var, channels // groups)


def fold_group_norm(source, config: UNetConfig, cubes: np.ndarray, batch: int = 8):
    """A ``norm_layer="none"`` copy of the U-Net ``source`` (built from ``config``), calibrated on ``cubes``
    ``(n, c, c, c, 1)``."""
    import keras

    if config.norm_layer != "group":
        raise ValueError("the source model has no group normalisation to fold")
    target = build_unet(dataclasses.replace(config, norm_layer="none"))
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    cubes = np.asarray(cubes, np.float32)
    for gn in [layer for layer in source.layers if isinstance(layer, keras.layers.GroupNormalization)]:
        conv_name = gn.name[: -len("_gn")] + "_conv"
        conv = target.get_layer(conv_name)
        probe = keras.Model(target.inputs, conv.output)
        raw = np.concatenate([np.asarray(probe.predict_on_batch(cubes[i:i + batch]))
                              for i in range(0, len(cubes), batch)])
        mean, var = _group_stats(raw, gn.groups)
        gamma, beta = (np.asarray(w) for w in gn.get_weights())
        scale = gamma / np.sqrt(var + gn.epsilon)
        kernel, bias = (np.asarray(w, np.float64) for w in conv.get_weights())
        # Conv3D kernels are (k, k, k, in, out); Conv3DTranspose kernels are (k, k, k, out, in)
        out_axis = 3 if isinstance(conv, keras.layers.Conv3DTranspose) else 4
        shape = [1] * kernel.ndim
        shape[out_axis] = -1
        conv.set_weights([(kernel * scale.reshape(shape)).astype(np.float32),
                          ((bias - mean) * scale + beta).astype(np.float32)])
    return target
