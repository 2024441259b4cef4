"""Stage 4: the 3D U-Net of the DeepEMhancer paper, as a Keras 3 model.

Paper configuration: three down blocks and three up blocks with skip connections; every block is three 3x3x3
convolutions, each followed by GroupNormalization and PReLU; 32/64/128 filters; strided convolutions go down,
transposed convolutions go up; a bottleneck block at the deepest level; one linear output channel. With these
defaults the network has 6.4 M parameters. Width, convolutions per block, depth and group count are parameters, so
narrower variants can be trained and run on a CPU.

The network is fully convolutional (input ``(None, None, None, 1)``): any cube whose side is a multiple of
``2**depth`` works, which lets tiling choose the cube size. PReLU slopes are shared over space (one per channel).

Group normalisation computes its statistics over each cube, so a voxel's prediction depends on what else the cube
holds: a cube of pure solvent is scaled up into texture, and overlapping cubes disagree. ``norm_layer="none"``
drops the normalisation layers (the input is normalised once per map instead: noise SD 0.1, then divided by its
signal level, :func:`deepemhancer.normalize.signal_gain`): the network is then a function of the map itself, so
any tiling gives the same output up to cube-border effects, and cubes can be as large as memory allows.

Keras is imported only when a network is built: :class:`UNetConfig` also describes the graph that
:mod:`deepemhancer.runtime_openvino` builds from the same weights without Keras.
:func:`deepemhancer.training.fold.fold_group_norm` turns a trained group-normalised model into this form by freezing
each layer's statistics into its convolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


NORM_LAYERS = ("group", "none")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture parameters of the U-Net (stored in each model's metadata)."""

    filters: tuple[int, ...] = (32, 64, 128)
    convs_per_block: int = 3
    groups: int = 8
    kernel_size: int = 3
    norm_layer: str = "group"       # "group" (paper) or "none" (tiling-independent, see module docstring)
    output_activation: str = "linear"
    name: str = "deepemhancer_unet"

    def __post_init__(self):
        if self.norm_layer not in NORM_LAYERS:
            raise ValueError(f"unknown norm_layer {self.norm_layer!r}; choose one of {', '.join(NORM_LAYERS)}")

    @property
    def depth(self) -> int:
        return len(self.filters)

    @property
    def cube_multiple(self) -> int:
        """Cube sides must be multiples of this number."""
        return 2 ** self.depth

    def to_dict(self) -> dict:
        d = asdict(self)
        d["filters"] = list(self.filters)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown U-Net parameters {sorted(unknown)}")
        d = dict(d)
        if "filters" in d:
            d["filters"] = tuple(int(f) for f in d["filters"])
        return cls(**d)


PAPER_CONFIG = UNetConfig()


def groups_for(width: int, groups: int) -> int:
    """GroupNormalization needs the channel count to be a multiple of the group count."""
    g = min(groups, width)
    while width % g:
        g -= 1
    return g


def _conv_norm_act(x, width: int, config: UNetConfig, name: str, strides: int = 1, transpose: bool = False):
    from keras import layers
    conv = layers.Conv3DTranspose if transpose else layers.Conv3D
    x = conv(width, config.kernel_size, strides=strides, padding="same", name=f"{name}_conv")(x)
    if config.norm_layer == "group":
        x = layers.GroupNormalization(groups=groups_for(width, config.groups), epsilon=1e-5, name=f"{name}_gn")(x)
    return layers.PReLU(shared_axes=[1, 2, 3], name=f"{name}_prelu")(x)


def _block(x, width: int, config: UNetConfig, name: str):
    for i in range(config.convs_per_block):
        x = _conv_norm_act(x, width, config, f"{name}_{i}")
    return x


def build_unet(config: UNetConfig = PAPER_CONFIG) -> keras.Model:
    """Build the U-Net.

    Down block ``i``: ``convs_per_block`` convolutions at ``filters[i]`` (kept as the skip), then a stride-2
    convolution. Bottleneck: one block at ``filters[-1]``. Up block ``i`` (deepest first): a stride-2 transposed
    convolution to ``filters[i]``, concatenation with skip ``i``, then a block at ``filters[i]``. Head: a 1x1x1
    convolution to one channel with ``output_activation``.
    """
    import keras
    if config.depth < 1 or config.convs_per_block < 1:
        raise ValueError("a U-Net needs at least one level and one convolution per block")
    inputs = keras.Input(shape=(None, None, None, 1), name="map")
    x = inputs
    skips = []
    for level, width in enumerate(config.filters):
        x = _block(x, width, config, f"down{level}")
        skips.append(x)
        x = _conv_norm_act(x, width, config, f"down{level}_pool", strides=2)
    x = _block(x, config.filters[-1], config, "bottleneck")
    for level in reversed(range(config.depth)):
        width = config.filters[level]
        x = _conv_norm_act(x, width, config, f"up{level}_upsample", strides=2, transpose=True)
        x = keras.layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _block(x, width, config, f"up{level}")
    outputs = keras.layers.Conv3D(1, 1, activation=config.output_activation, name="head", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=config.name)
