"""Read a Keras 3 ``.weights.h5`` file without Keras: layer name -> its variables, as numpy arrays.

Keras 3 stores each layer of a functional model under ``layers/<class-derived key>/vars/<i>`` and the layer's own
name in the ``vars`` group's ``name`` attribute. Runtimes that do not run Keras (OpenVINO) read the weights from
here, so the Keras weights file stays the one source of truth.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import InputError


def read_keras_weights(path: str) -> dict[str, list[np.ndarray]]:
    """``{layer name: [variable 0, variable 1, ...]}`` of every layer that has variables."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f:
                raise InputError(f"{path} is not a Keras 3 weights file (no 'layers' group); save it with "
                                 f"model.save_weights('<name>.weights.h5').")
            weights = {}
            for key, group in f["layers"].items():
                if "vars" not in group:
                    continue
                variables = group["vars"]
                name = variables.attrs.get("name", key)
                name = name.decode() if isinstance(name, bytes) else str(name)
                arrays = [np.asarray(variables[str(i)], dtype=np.float32) for i in range(len(variables))]
                if arrays:
                    weights[name] = arrays
    except OSError as exc:
        raise InputError(f"cannot read the weights file {path}: {exc}. Reinstall the model.") from exc
    return weights


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
