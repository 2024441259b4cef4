"""Choose the compute devices and the Keras backend before Keras is imported.

``-g`` follows the original: a comma list of GPU ids, ``-1`` for the CPU, ``all`` for every GPU the job may use
(``$CUDA_VISIBLE_DEVICES`` as set by SLURM, else all). The Keras backend is read from ``$KERAS_BACKEND`` when set;
otherwise we pick torch when it is installed (2-7x faster than TensorFlow on CPU here, see the benchmarks), except
for several GPUs, where TensorFlow's MirroredStrategy splits each batch across them.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from .errors import InputError

BACKENDS = ("auto", "tensorflow", "torch", "jax")


def parse_gpu_ids(gpu_ids: str) -> list[str] | None:
    """``None`` for 'all', ``[]`` for the CPU, else the list of ids."""
    text = (gpu_ids or "").strip()
    if text.lower() == "all":
        return None
    if text in ("", "-1", "cpu"):
        return []
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not all(t.isdigit() for t in ids):
        raise InputError(f"-g/--gpuIds must be a comma-separated list of GPU numbers, -1 (CPU) or all; got {gpu_ids!r}.")
    return ids


def configure(gpu_ids: str, backend: str = "auto", environ=os.environ) -> tuple[str, int]:
    """Set ``CUDA_VISIBLE_DEVICES`` and ``KERAS_BACKEND`` for this process; returns (backend, number of GPUs).

    Must run before Keras is imported (the command calls it first thing).
    """
    if backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    ids = parse_gpu_ids(gpu_ids)
    if ids is None:
        visible = environ.get("CUDA_VISIBLE_DEVICES", "")
        n_gpus = len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"]) if visible else 1
    else:
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids) if ids else "-1"
        n_gpus = len(ids)
    environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # TF would otherwise grab every GPU's memory
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend == "auto":
        backend = environ.get("KERAS_BACKEND", "")
        if not backend:
            backend = "torch" if importlib.util.find_spec("torch") and n_gpus <= 1 else "tensorflow"
    if "keras" in sys.modules and environ.get("KERAS_BACKEND", backend) != backend:
        raise RuntimeError("the Keras backend must be chosen before keras is imported")
    environ["KERAS_BACKEND"] = backend
    if importlib.util.find_spec(backend) is None:
        raise InputError(f"Keras backend {backend!r} is not installed in this environment; install it "
                         f"(pip install {'tensorflow-cpu' if backend == 'tensorflow' else backend}) or choose another "
                         f"with --backend / $KERAS_BACKEND.")
    return backend, n_gpus
