"""Start a wider or deeper U-Net from a trained smaller one without losing what it learnt (Net2Net).

Every channel of the wide network is a copy of a channel of the narrow one (new channel ``j`` of a layer widened
from ``W`` to ``W'`` copies old channel ``j mod W``), and every weight that reads a copied channel is divided by the
number of copies, so the wide network computes the same function as the narrow one (PReLU slopes are per channel
and are copied with it; concatenated skips keep their order). A little noise on the copies breaks their symmetry,
which gradient descent could otherwise never break. This lets a larger model (paid for by the faster runtime) start
from the shipped one on a 2-core machine instead of from random weights.

Only the widths may differ: same depth, convolutions per block, kernel size and normalisation (``"none"``).

Deepening (:func:`deepen_unet`, more convolutions per block) appends to every block convolutions that start as the
identity (centre tap of the kernel the identity matrix, zero bias) followed by a PReLU with slope 1, which is linear:
the deeper network again computes the same function, and training bends the new layers away from the identity.
"""

from __future__ import annotations

import numpy as np

from ..network import UNetConfig, build_unet


def _layer_inputs(config: UNetConfig) -> dict[str, list[tuple[str, int]]]:
    """For each convolution of :func:`deepemhancer.network.build_unet`, the layers (and their widths) whose outputs it
    reads, in channel order; ``"map"`` is the 1-channel input."""
    inputs: dict[str, list[tuple[str, int]]] = {}
    previous = [("map", 1)]

    def block(name: str, width: int):
        nonlocal previous
        for i in range(config.convs_per_block):
            inputs[f"{name}_{i}"] = previous
            previous = [(f"{name}_{i}", width)]

    skips = []
    for level, width in enumerate(config.filters):
        block(f"down{level}", width)
        skips.append(previous)
        inputs[f"down{level}_pool"] = previous
        previous = [(f"down{level}_pool", width)]
    block("bottleneck", config.filters[-1])
    for level in reversed(range(config.depth)):
        width = config.filters[level]
        inputs[f"up{level}_upsample"] = previous
        previous = [(f"up{level}_upsample", width)] + skips[level]
        block(f"up{level}", width)
    inputs["head"] = previous
    return inputs


def _channel_map(old: int, new: int) -> tuple[np.ndarray, np.ndarray]:
    """(old channel of each new channel, number of copies of that old channel)."""
    if new < old:
        raise ValueError(f"cannot narrow a layer from {old} to {new} channels")
    source = np.arange(new) % old
    return source, np.bincount(source, minlength=old)[source]


def widen_unet(source, source_config: UNetConfig, config: UNetConfig, *, noise: float = 0.01,
               rng: np.random.Generator | None = None):
    """A U-Net built from ``config`` that computes what ``source`` (built from ``source_config``) computes, up to
    ``noise`` (relative SD added to the copied weights)."""
    import keras

    same = ("convs_per_block", "kernel_size", "norm_layer", "output_activation")
    if (source_config.depth != config.depth or any(getattr(source_config, k) != getattr(config, k) for k in same)
            or config.norm_layer != "none"):
        raise ValueError("widening needs the same U-Net apart from its widths (and no normalisation layers)")
    rng = rng or np.random.default_rng(0)
    wide = build_unet(config)
    widths_old = {name: w for name, w in _layer_widths(source_config).items()}
    widths_new = _layer_widths(config)
    for name, reads in _layer_inputs(config).items():
        old_reads = _layer_inputs(source_config)[name]
        in_source, in_copies = [], []
        offset = 0
        for (layer, w_new), (_, w_old) in zip(reads, old_reads):
            src, copies = _channel_map(w_old, w_new)
            in_source.append(src + offset)
            in_copies.append(copies)
            offset += w_old
        in_source, in_copies = np.concatenate(in_source), np.concatenate(in_copies)
        out_source, _ = _channel_map(widths_old[name], widths_new[name])
        conv_name = "head" if name == "head" else f"{name}_conv"
        kernel, bias = (np.asarray(w, np.float64) for w in source.get_layer(conv_name).get_weights())
        if isinstance(wide.get_layer(conv_name), keras.layers.Conv3DTranspose):   # (k, k, k, out, in)
            kernel = kernel[:, :, :, out_source][..., in_source] / in_copies
        else:                                                                      # (k, k, k, in, out)
            kernel = kernel[:, :, :, in_source][..., out_source] / in_copies[:, None]
        kernel = kernel * (1 + noise * rng.standard_normal(kernel.shape))
        wide.get_layer(conv_name).set_weights([kernel.astype(np.float32), bias[out_source].astype(np.float32)])
        if name != "head":
            (alpha,) = source.get_layer(f"{name}_prelu").get_weights()
            wide.get_layer(f"{name}_prelu").set_weights([np.asarray(alpha)[..., out_source]])
    return wide


def _layer_widths(config: UNetConfig) -> dict[str, int]:
    """Output channels of each convolution of the U-Net (the head has one)."""
    widths = {"head": 1}
    for name, reads in _layer_inputs(config).items():
        for layer, width in reads:
            if layer != "map":
                widths[layer] = width
    return widths


def deepen_unet(source, source_config: UNetConfig, config: UNetConfig):
    """A U-Net built from ``config`` (more convolutions per block than ``source_config``, otherwise the same) that
    computes exactly what ``source`` computes: the added convolutions of each block start as the identity."""
    same = ("filters", "kernel_size", "norm_layer", "output_activation")
    if (config.convs_per_block < source_config.convs_per_block or config.norm_layer != "none"
            or any(getattr(source_config, k) != getattr(config, k) for k in same)):
        raise ValueError("deepening needs the same U-Net apart from more convolutions per block (and no "
                         "normalisation layers)")
    deep = build_unet(config)
    for layer in source.layers:
        if layer.weights:
            deep.get_layer(layer.name).set_weights(layer.get_weights())
    blocks = ([(f"down{level}", w) for level, w in enumerate(config.filters)] + [("bottleneck", config.filters[-1])]
              + [(f"up{level}", w) for level, w in enumerate(config.filters)])
    k, centre = config.kernel_size, config.kernel_size // 2
    for name, width in blocks:
        for i in range(source_config.convs_per_block, config.convs_per_block):
            kernel = np.zeros((k, k, k, width, width), np.float32)
            kernel[centre, centre, centre] = np.eye(width, dtype=np.float32)
            deep.get_layer(f"{name}_{i}_conv").set_weights([kernel, np.zeros(width, np.float32)])
            deep.get_layer(f"{name}_{i}_prelu").set_weights([np.ones((1, 1, 1, width), np.float32)])
    return deep
