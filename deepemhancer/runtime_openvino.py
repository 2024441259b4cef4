"""Stage 5's network on OpenVINO: the CPU runtime, built from the model's own Keras weights.

The U-Net of :mod:`deepemhancer.network` is rebuilt as an OpenVINO graph, layer for layer from the architecture in
the model's metadata, with the weights read from its Keras ``.weights.h5`` file (:mod:`.models.weights`); neither
Keras, TensorFlow nor torch is imported. The Keras weights stay the one source of truth: the graph is saved as
OpenVINO IR in a cache folder keyed by the SHA-256 of the weights and the architecture (and this engine's
version), so changed weights give a new cache entry and never a stale network. On this machine (2 cores, AVX2) it
runs the shipped networks 3x faster than Keras on torch and 5x faster than on TensorFlow, to 1e-8 of their output
(``benchmarks/benchmark_speed.py``, ``tests/test_runtime_openvino.py``).

Layout: Keras works channels-last ``(b, z, y, x, c)``, OpenVINO channels-first ``(b, c, z, y, x)``; with one input
and one output channel the two differ only by a reshape, done in :meth:`OpenVINONetwork.predict`.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from . import __version__
from .errors import InputError

CACHE_ENV = "DEEPEMHANCER_CACHE_DIR"
INSTALL_HINT = ("install it with `pip install openvino` in the engine's environment (Scipion: `scipion3 installb "
                "deepemhancer`), or choose a Keras backend with --backend torch|tensorflow")


def available() -> bool:
    import importlib.util
    return importlib.util.find_spec("openvino") is not None


def cpu_threads(environ=os.environ) -> int:
    """Cores this job may use: ``$OMP_NUM_THREADS``, else SLURM's ``$SLURM_CPUS_PER_TASK``, else the CPU affinity."""
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        text = environ.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_cache_dir(environ=os.environ) -> str:
    if environ.get(CACHE_ENV):
        return environ[CACHE_ENV]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "deepemhancer", "openvino")


# ---------------------------------------------------------------------------------------------- the graph
def _layer(weights: dict, name: str) -> list[np.ndarray]:
    if name not in weights:
        raise InputError(f"the weights file has no layer {name!r}: it does not fit the architecture in the model's "
                         f"metadata (retrain or re-export the model).")
    return weights[name]


def _ov_kernel(kernel: np.ndarray):
    """A Keras kernel ``(k, k, k, a, b)`` as an OpenVINO constant ``(b, a, k, k, k)``: Conv3D's (in, out) become
    Convolution's (out, in), Conv3DTranspose's (out, in) become ConvolutionBackpropData's (in, out)."""
    from openvino import opset13 as ops
    return ops.constant(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))


def build_graph(architecture: dict, weights: dict[str, list[np.ndarray]]):
    """The OpenVINO model of :func:`deepemhancer.network.build_unet` for ``architecture`` with these weights.

    Input ``map`` and output ``output`` are ``(batch, 1, z, y, x)`` with dynamic batch and sides (sides must be
    multiples of ``2**depth``, as for the Keras model).
    """
    import openvino as ov
    from openvino import opset13 as ops
    from .network import UNetConfig, groups_for

    config = UNetConfig.from_dict(architecture)
    k = config.kernel_size
    used = set()

    def layer(name):
        used.add(name)
        return _layer(weights, name)

    def conv(x, width, name, strides=1, transpose=False):
        kernel, bias = layer(f"{name}_conv")
        out_axis = 3 if transpose else 4
        if kernel.ndim != 5 or kernel.shape[:3] != (k, k, k) or kernel.shape[out_axis] != width:
            raise InputError(f"layer {name}_conv has a kernel of shape {kernel.shape}, not {k}x{k}x{k} to {width} "
                             f"channels: the weights do not fit the architecture in the model's metadata.")
        filters = _ov_kernel(kernel)
        if transpose:
            # Keras "same" padding for stride 2 is the gradient of a forward convolution padded (0, 1): output side
            # = 2 x input side
            pad = k - strides
            y = ops.convolution_backprop_data(x, filters, [strides] * 3, pads_begin=[pad // 2] * 3,
                                              pads_end=[pad - pad // 2] * 3)
        else:  # "same" = OpenVINO's same_upper
            y = ops.convolution(x, filters, [strides] * 3, [0] * 3, [0] * 3, [1] * 3, auto_pad="same_upper")
        return ops.add(y, ops.constant(bias.reshape(1, -1, 1, 1, 1)))

    def conv_norm_act(x, width, name, strides=1, transpose=False):
        x = conv(x, width, name, strides, transpose)
        if config.norm_layer == "group":
            gamma, beta = layer(f"{name}_gn")
            x = ops.group_normalization(x, ops.constant(gamma), ops.constant(beta),
                                        num_groups=groups_for(width, config.groups), epsilon=1e-5)
        (alpha,) = layer(f"{name}_prelu")
        return ops.prelu(x, ops.constant(alpha.reshape(-1)))

    def block(x, width, name):
        for i in range(config.convs_per_block):
            x = conv_norm_act(x, width, f"{name}_{i}")
        return x

    inputs = ops.parameter(ov.PartialShape([-1, 1, -1, -1, -1]), ov.Type.f32, name="map")
    x = inputs
    skips = []
    for level, width in enumerate(config.filters):
        x = block(x, width, f"down{level}")
        skips.append(x)
        x = conv_norm_act(x, width, f"down{level}_pool", strides=2)
    x = block(x, config.filters[-1], "bottleneck")
    for level in reversed(range(config.depth)):
        width = config.filters[level]
        x = conv_norm_act(x, width, f"up{level}_upsample", strides=2, transpose=True)
        x = ops.concat([x, skips[level]], axis=1)
        x = block(x, width, f"up{level}")
    kernel, bias = layer("head")
    unused = sorted(set(weights) - used)
    if unused:
        # weights of a deeper network fill every layer of a shallower one and would compute something else silently
        raise InputError(f"the weights file has layers this architecture does not use ({', '.join(unused[:4])}"
                         f"{', ...' if len(unused) > 4 else ''}): it does not fit the architecture in the model's "
                         f"metadata (retrain or re-export the model).")
    head = ops.convolution(x, _ov_kernel(kernel), [1] * 3, [0] * 3, [0] * 3, [1] * 3)
    out = ops.add(head, ops.constant(bias.reshape(1, -1, 1, 1, 1)))
    if config.output_activation != "linear":
        out = getattr(ops, config.output_activation)(out)
    result = ops.result(out, name="output")
    return ov.Model([result], [inputs], config.name)


# ---------------------------------------------------------------------------------------------- cache and runtime
def cache_key(weights_path: str, architecture: dict) -> str:
    """SHA-256 over the weights file, the architecture, this engine's and OpenVINO's versions."""
    import hashlib
    import openvino as ov
    from .models.weights import file_sha256
    text = json.dumps({"weights": file_sha256(weights_path), "architecture": architecture,
                       "engine": __version__, "openvino": ov.get_version()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_graph(weights_path: str, architecture: dict, cache_dir: str | None = None):
    """``(openvino.Model, where it came from)``: the cached IR when its key matches, else built and cached.

    The IR goes into ``<cache_dir>/<key>/`` (``$DEEPEMHANCER_CACHE_DIR``, else ``~/.cache/deepemhancer/openvino``),
    written into a temporary folder and renamed, so concurrent jobs never read half a file. An unwritable cache
    only costs the build (well under a second) on every run.
    """
    import openvino as ov
    from .models.weights import read_keras_weights
    cache_dir = cache_dir or default_cache_dir()
    key = cache_key(weights_path, architecture)
    entry = os.path.join(cache_dir, key)
    xml = os.path.join(entry, "network.xml")
    core = ov.Core()
    if os.path.isfile(xml):
        try:
            return core.read_model(xml), f"cache {entry}"
        except RuntimeError:  # a damaged entry: rebuild it below
            pass
    graph = build_graph(architecture, read_keras_weights(weights_path))
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".tmp_{key}_", dir=cache_dir)
        ov.save_model(graph, os.path.join(tmp, "network.xml"), compress_to_fp16=False)
        with open(os.path.join(tmp, "source.json"), "w") as f:
            json.dump({"weights": os.path.basename(weights_path), "architecture": architecture,
                       "engine": __version__}, f, indent=2)
        try:
            os.rename(tmp, entry)
        except OSError:  # another job cached it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        return graph, f"built, cached in {entry}"
    except OSError:
        return graph, "built (cache folder not writable)"


class OpenVINONetwork:
    """The network compiled for the CPU; :meth:`predict` has the Keras model's signature.

    One compiled model per cube shape (static shapes run 1.0-1.4x faster than a dynamic one here), each using
    ``threads`` cores in float32, so predictions equal Keras's to rounding.
    """

    def __init__(self, graph, threads: int, source: str = ""):
        import openvino as ov
        self.core = ov.Core()
        self.graph = graph
        self.threads = max(1, int(threads))
        self.source = source
        self._compiled: dict[tuple[int, ...], object] = {}

    def _request(self, shape: tuple[int, ...]):
        if shape not in self._compiled:
            graph = self.graph.clone()
            graph.reshape(list(shape))
            compiled = self.core.compile_model(graph, "CPU", {"INFERENCE_NUM_THREADS": self.threads,
                                                              "INFERENCE_PRECISION_HINT": "f32",
                                                              "PERFORMANCE_HINT": "LATENCY"})
            self._compiled[shape] = compiled.create_infer_request()
        return self._compiled[shape]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Network output for a float32 batch ``(b, z, y, x, 1)``, cube by cube (one cube fills every core)."""
        batch = np.asarray(batch, dtype=np.float32)
        out = np.empty(batch.shape, dtype=np.float32)
        for i, cube in enumerate(batch):
            request = self._request((1, 1) + cube.shape[:3])
            request.infer({0: np.ascontiguousarray(cube.reshape((1, 1) + cube.shape[:3]))})
            out[i] = request.get_output_tensor(0).data.reshape(cube.shape)
        return out


def load_network(weights_path: str, architecture: dict, threads: int | None = None,
                 cache_dir: str | None = None) -> OpenVINONetwork:
    if not available():
        raise InputError(f"the OpenVINO runtime is not installed: {INSTALL_HINT}.")
    try:
        graph, source = cached_graph(weights_path, architecture, cache_dir)
    except InputError:
        raise
    except (RuntimeError, ValueError, TypeError) as exc:  # OpenVINO's shape inference on mismatched weights
        raise InputError(f"the weights {weights_path} do not fit the model's architecture {architecture}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc}") from exc
    return OpenVINONetwork(graph, threads or cpu_threads(), source)
