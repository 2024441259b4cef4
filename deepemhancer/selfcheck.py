"""``deepemhancer --selfcheck``: is this environment sound, before a long run?

Installation trouble is the original's largest group of user complaints (framework/driver mismatches, models that
do not load), and it used to show only hours into a queue job. The self-check answers in seconds, one line per
item, each problem with its fix:

* **versions** of the engine, Python and the packages it needs;
* **runtime**: what ``--backend`` (default ``auto``) selects with the given ``-g``, the threads it will use, the
  GPUs this process can see, the Keras backends installed;
* **models**: every kind found where the command looks for it, with the SHA-256 of its weights and its metadata
  validated;
* **end to end** (unless ``quick``): the tightTarget model (or ``--deepLearningModelPath``) runs on a built-in map
  through the selected runtime, the whole pipeline from normalisation to resampling back, and its output is compared
  with the reference stored in the model's metadata when it was saved (computed with Keras: a runtime that computes
  something else, wrong weights, a broken resampling all show up here).

Exit code 0 when every line is ok, 2 otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import ORIGINAL_VERSION, __version__
from .errors import InputError

#: the built-in map: box (voxels), voxel size (A) and seed; not 1 A, so resampling is part of the check
BUILTIN_BOX, BUILTIN_VOXEL, BUILTIN_SEED = 48, 1.25, 20201
#: probes of the output compared with the reference: the highest voxels and fixed positions
PROBES = 48
#: tolerance of the comparison, as a fraction of the reference's peak
TOLERANCE = 2e-3
REQUIRED = ("numpy", "scipy", "mrcfile", "h5py")


@dataclass
class Check:
    """One line of the self-check."""

    item: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"  {'ok     ' if self.ok else 'PROBLEM'}  {self.item}: {self.detail}"
        return text + (f" -> fix: {self.fix}" if self.fix and not self.ok else "")


def builtin_map() -> tuple[np.ndarray, float]:
    """A small, deterministic noisy "molecule" (400 Gaussian atoms of 1.5 A in a 16 A ball, plus white noise).

    Uses ``numpy.random.RandomState``, whose streams numpy keeps stable across versions.
    """
    rng = np.random.RandomState(BUILTIN_SEED)
    n, v = BUILTIN_BOX, BUILTIN_VOXEL
    centres = rng.normal(size=(400, 3))
    centres *= (16.0 * rng.uniform(0, 1, size=(400, 1)) ** (1 / 3)) / np.linalg.norm(centres, axis=1, keepdims=True)
    centres += n * v / 2
    axis = (np.arange(n) + 0.5) * v
    data = np.zeros((n, n, n))
    for x, y, z in centres:  # separable Gaussians
        gz, gy, gx = (np.exp(-((axis - c) ** 2) / (2 * 1.5 ** 2)) for c in (z, y, x))
        data += gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    data += 0.15 * rng.standard_normal(data.shape)
    return data.astype(np.float32), v


def _probe_indices(reference: np.ndarray) -> np.ndarray:
    flat = reference.ravel()
    top = np.argsort(flat)[-PROBES // 2:]
    fixed = np.random.RandomState(BUILTIN_SEED + 1).randint(0, flat.size, PROBES - len(top))
    return np.concatenate([top, fixed])


def _run_builtin(model):
    from .api import EnhanceOptions, enhance
    data, voxel = builtin_map()
    return enhance(data, voxel, options=EnhanceOptions(progress=False), model=model)


def reference_for(model) -> dict:
    """The ``selfcheck`` entry stored in a model's metadata: its output on the built-in map, summarised."""
    out = _run_builtin(model).data.astype(np.float64)
    idx = _probe_indices(out)
    return {"version": 1, "map": f"builtin {BUILTIN_BOX}^3 at {BUILTIN_VOXEL} A, seed {BUILTIN_SEED}",
            "runtime": model.runtime, "peak": float(out.max()), "sum": float(out.sum()),
            "probes": [int(i) for i in idx], "values": [float(v) for v in out.ravel()[idx]]}


def compare(output: np.ndarray, reference: dict) -> tuple[bool, str]:
    """Whether ``output`` matches the stored reference, and how closely (one line)."""
    peak = reference["peak"]
    values = output.ravel()[np.asarray(reference["probes"], int)].astype(np.float64)
    worst = float(np.max(np.abs(values - np.asarray(reference["values"])))) / peak
    total = abs(float(output.sum()) - reference["sum"]) / max(abs(reference["sum"]), 1e-12)
    if output.max() <= 0.1 * peak:
        return False, f"the output is (nearly) empty: peak {output.max():.3g}, reference {peak:.3g}"
    ok = worst <= TOLERANCE and total <= TOLERANCE
    return ok, (f"{'matches' if ok else 'differs from'} the reference made with {reference.get('runtime', '?')} "
                f"(largest probe difference {worst:.1e} of the peak, sum {total:.1e}; tolerance {TOLERANCE:g})")


def weights_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions() -> list[Check]:
    found = {p: _version(p) for p in REQUIRED}
    detail = ", ".join([f"engine {__version__} (flags of DeepEMhancer {ORIGINAL_VERSION})",
                        f"Python {platform.python_version()}"] + [f"{p} {v}" for p, v in found.items() if v])
    checks = [Check("versions", True, detail)]
    for package, version in found.items():
        if version is None:
            checks.append(Check(f"package {package}", False, "not installed",
                                f"pip install {package} (or reinstall the environment: scipion3 installb "
                                f"deepemhancer)"))
    return checks


def check_runtime(gpu_ids: str, backend: str, environ=os.environ) -> tuple[list[Check], str | None, int]:
    """The runtime ``configure`` selects (or the problem), its threads, the visible GPUs and Keras backends."""
    from . import devices
    keras_backends = [b for b in devices.KERAS_BACKENDS if devices.installed(b)]
    gpus = "none visible" if not devices.nvidia_gpus_present(environ) else \
        f"NVIDIA devices present (CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
    try:
        runtime, n_gpus = devices.configure(gpu_ids, backend, environ)
    except InputError as exc:
        package = devices.PIP_NAMES.get(backend, backend)
        return [Check("runtime", False, f"--backend {backend} with -g {gpu_ids}: {str(exc).split(';')[0]}",
                      f"pip install {package} into this environment, or run with --backend auto")], None, 0
    if runtime == "openvino":
        from .runtime_openvino import cpu_threads
        where = f"OpenVINO {_version('openvino')} on the CPU, {cpu_threads(environ)} threads"
    else:
        where = (f"Keras {_version('keras')} on {runtime} {_version(runtime) or ''}".rstrip()
                 + (f", {n_gpus} GPU(s)" if n_gpus else ", on the CPU"))
    detail = (f"--backend {backend} -> {where}; GPUs: {gpus}; Keras backends installed: "
              f"{', '.join(keras_backends) or 'none'}")
    checks = [Check("runtime", True, detail)]
    if not keras_backends:
        checks.append(Check("keras backend", runtime == "openvino" and n_gpus == 0,
                            "none installed: official .hd5 checkpoints and GPUs cannot run",
                            "pip install torch (or tensorflow-cpu) in the environment, or reinstall it with "
                            "DEEPEMHANCER_KERAS_BACKENDS=torch scipion3 installb deepemhancer"))
    return checks, runtime, n_gpus


def check_models(model_path: str | None = None) -> list[Check]:
    from .models import INSTALL_HINT, KINDS, read_metadata
    from .models import find_model
    checks = []
    kinds = KINDS if not model_path or os.path.isdir(model_path) else ("tightTarget",)
    for kind in kinds:
        try:
            path = find_model(kind, model_path)
            if path.endswith(".hd5"):
                checks.append(Check(f"model {kind}", True, f"{path} (official checkpoint, sha256 "
                                                           f"{weights_sha256(path)[:16]})"))
                continue
            metadata, weights = read_metadata(path)
        except InputError as exc:
            checks.append(Check(f"model {kind}", False, str(exc).replace(INSTALL_HINT, "").strip(),
                                "scipion3 installb deepemhancerModels, or reinstall the engine (the shipped models "
                                "live in deepemhancer/models/), or set $DEEPEMHANCER_MODELS_DIR"))
            continue
        filters = "/".join(str(f) for f in metadata.architecture.get("filters", []))
        checks.append(Check(f"model {kind}", True, f"{path} (weights sha256 {weights_sha256(weights)[:16]}, "
                                                   f"filters {filters})"))
    return checks


def check_end_to_end(runtime: str, model_path: str | None = None) -> Check:
    from .models import find_model, load_model
    try:
        path = find_model("tightTarget", model_path)
        start = time.perf_counter()
        model = load_model(path, runtime="openvino" if runtime == "openvino" else "keras")
        result = _run_builtin(model)
        seconds = time.perf_counter() - start
    except InputError as exc:
        return Check("end-to-end", False, str(exc), "see the lines above")
    except Exception as exc:  # noqa: BLE001 - a broken framework raises anything; the check must say it
        return Check("end-to-end", False, f"the run failed: {type(exc).__name__}: {exc}",
                     "reinstall the environment (scipion3 installb deepemhancer) or choose another --backend")
    what = (f"built-in {BUILTIN_BOX}^3 map at {BUILTIN_VOXEL} A through {result.runtime} in {seconds:.1f} s "
            f"({result.cubes_evaluated} cube(s))")
    reference = getattr(model.metadata, "selfcheck", None) or {}
    if not reference.get("probes"):  # official checkpoints, models saved before references existed
        empty = float(result.data.max()) <= 0
        return Check("end-to-end", True, f"{what}; this model stores no reference output to compare with (output "
                                         f"{'EMPTY: check the model' if empty else 'not empty'}; models saved by "
                                         f"deepemhancer-train store one)")
    ok, how = compare(result.data, reference)
    return Check("end-to-end", ok, f"{what}; {how}",
                 "reinstall the environment and the models (scipion3 installb deepemhancer deepemhancerModels), "
                 "or try another --backend")


def run(gpu_ids: str = "-1", backend: str = "auto", model_path: str | None = None, quick: bool = False,
        stream=None) -> int:
    """Print the self-check (to ``stream``, default stdout); 0 when sound, 2 when something needs fixing."""
    stream = stream or sys.stdout
    print("deepemhancer self-check", file=stream, flush=True)
    checks: list[Check] = []

    def report(new: list[Check]) -> None:  # printed as they come: the end-to-end run takes seconds
        for c in new:
            print(c.line(), file=stream, flush=True)
        checks.extend(new)
    report(check_versions())
    runtime_checks, runtime, _ = check_runtime(gpu_ids, backend)
    report(runtime_checks)
    report(check_models(model_path))
    if not quick and runtime is not None:
        report([check_end_to_end(runtime, model_path)])
    problems = [c for c in checks if not c.ok]
    print(f"self-check: {'all ok' if not problems else f'{len(problems)} problem(s)'}", file=stream, flush=True)
    return 2 if problems else 0


def store_reference(json_path: str) -> dict:
    """Compute the reference of the model ``json_path`` with Keras and write it into its metadata file."""
    from .models import load_model, write_metadata
    model = load_model(json_path, runtime="keras")
    model.metadata.selfcheck = reference_for(model)
    write_metadata(model.metadata, json_path)
    return model.metadata.selfcheck


if __name__ == "__main__":  # python -m deepemhancer.selfcheck --store MODEL.json ...: (re)write references
    if len(sys.argv) < 3 or sys.argv[1] != "--store":
        sys.exit("usage: python -m deepemhancer.selfcheck --store MODEL.json [MODEL.json ...]")
    for model_json in sys.argv[2:]:
        ref = store_reference(model_json)
        print(f"{model_json}: reference stored (peak {ref['peak']:.4g}, {ref['runtime']})")
