"""Build a small, untrained but real DeepEMhancer model (run INSIDE the managed environment).

    python tiny_model.py OUT_DIR KIND NORMALIZATION [VOXEL_SIZE]

Writes OUT_DIR/deepemhancer_KIND.weights.h5 + .json with the engine's own API. The weights are a fixed random
initialisation (seed 0), so results are reproducible; tests use it where the shipped models would be slow.
"""

import sys

import keras

from deepemhancer.models import ModelMetadata, save_model
from deepemhancer.network import UNetConfig, build_unet


def main(out_dir, kind, normalization, voxel_size="2.0"):
    keras.utils.set_random_seed(0)
    config = UNetConfig(filters=(4, 8, 16), convs_per_block=1, groups=2)
    metadata = ModelMetadata(kind=kind, architecture=config.to_dict(), voxel_size=float(voxel_size),
                             cube_size=32, stride=16, normalization=normalization,
                             description="Untrained test model (random initialisation, seed 0).",
                             training={"provenance": "untrained; deepemhancer_plugin/tests/tiny_model.py",
                                       "epochs": 0})
    print(save_model(build_unet(config), metadata, out_dir, kind))


if __name__ == "__main__":
    main(*sys.argv[1:])
