"""Choose the compute devices and the runtime before any deep-learning framework is imported.

``-g`` follows the original: a comma list of GPU ids, ``-1`` for the CPU, ``all`` for every GPU the job may use
(``$CUDA_VISIBLE_DEVICES`` as set by SLURM, else all). ``--backend auto`` picks, by measurement
(``benchmarks/benchmark_speed.py``):

* on the CPU (``-g -1``, or no NVIDIA GPU on the machine): OpenVINO when installed, 3x faster than Keras on torch
  and 5x faster than on TensorFlow for the shipped networks, with the same output;
* on GPUs, or on a CPU without OpenVINO: a Keras backend, ``$KERAS_BACKEND`` when set, else torch when installed
  and at most one GPU is used, else TensorFlow (whose MirroredStrategy splits each batch across several GPUs).

Official ``.hd5`` checkpoints always run on Keras, so the Keras backend is set whatever the runtime.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

from .errors import InputError

KERAS_BACKENDS = ("tensorflow", "torch", "jax")
BACKENDS = ("auto", "openvino") + KERAS_BACKENDS
PIP_NAMES = {"tensorflow": "tensorflow-cpu", "torch": "torch", "jax": "jax", "openvino": "openvino"}


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


def nvidia_gpus_present(environ=os.environ) -> bool:
    """Whether this process could use an NVIDIA GPU, without importing a framework (device files + visibility)."""
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def default_keras_backend(n_gpus: int, environ=os.environ) -> str:
    return environ.get("KERAS_BACKEND") or ("torch" if installed("torch") and n_gpus <= 1 else "tensorflow")


def configure(gpu_ids: str, backend: str = "auto", environ=os.environ) -> tuple[str, int]:
    """Set ``CUDA_VISIBLE_DEVICES`` and ``KERAS_BACKEND`` for this process; returns (runtime, number of GPUs).

    The runtime is ``"openvino"`` or a Keras backend name. Must run before Keras is imported (the command calls it
    first thing).
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
    if not nvidia_gpus_present(environ):
        n_gpus = 0
    environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # TF would otherwise grab every GPU's memory
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend == "auto":
        backend = "openvino" if n_gpus == 0 and installed("openvino") else default_keras_backend(n_gpus, environ)
    keras_backend = backend if backend in KERAS_BACKENDS else default_keras_backend(n_gpus, environ)
    if "keras" in sys.modules and environ.get("KERAS_BACKEND", keras_backend) != keras_backend:
        raise RuntimeError("the Keras backend must be chosen before keras is imported")
    environ["KERAS_BACKEND"] = keras_backend
    if not installed(backend):
        hint = (" (OpenVINO is the CPU runtime; GPUs run through Keras)" if backend == "openvino" and n_gpus else "")
        raise InputError(f"runtime {backend!r} is not installed in this environment{hint}; install it "
                         f"(pip install {PIP_NAMES[backend]}) or choose another with --backend "
                         f"{'|'.join(b for b in BACKENDS if b != backend)}.")
    return backend, n_gpus
