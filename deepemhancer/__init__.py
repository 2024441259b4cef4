"""DeepEMhancer-style deep-learning post-processing of cryo-EM maps.

The engine reads a map (or two half maps), normalises its noise, resamples it to the model's voxel size, predicts
the post-processed map cube by cube with a 3D U-Net, blends the cubes, resamples back and writes an MRC file on
exactly the input's grid.

Public API::

    from deepemhancer import enhance, enhance_file, read_map, write_map
"""

__version__ = "0.1.0"
#: Version of the original program whose command-line flags we reproduce.
ORIGINAL_VERSION = "0.17"

from .errors import InputError, ModelNotFoundError  # noqa: E402
from .io import MapGrid, read_map, write_map  # noqa: E402


def __getattr__(name):
    # The pipeline imports Keras; load it only when asked so that `import deepemhancer` stays cheap.
    if name in ("enhance", "enhance_file", "EnhanceOptions", "EnhanceResult"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'deepemhancer' has no attribute {name!r}")


__all__ = ["__version__", "InputError", "ModelNotFoundError", "MapGrid", "read_map", "write_map",
           "enhance", "enhance_file", "EnhanceOptions", "EnhanceResult"]
