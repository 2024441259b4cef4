"""Re-run the fuzz cases of the reliability issue with the real command and print a table a reviewer can read.

Each case writes its inputs under a temporary folder (crops of the real EMD-3488 map in tests/data), runs
``python -m deepemhancer ... -g -1 --quiet`` in a subprocess and reports the exit code, the first line of the
message and a verdict on the output: not written, written with density (its SD), or written EMPTY (all zero, which
must never happen), plus whether every input stayed byte-identical.

    python benchmarks/fuzz_inputs.py
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import mrcfile
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from deepemhancer.io import MapGrid, read_map, write_map  # noqa: E402
from deepemhancer.models import PACKAGE_MODELS_DIR  # noqa: E402

EMD = os.path.join(REPO, "tests", "data", "emd_3488.mrc")


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _cases(tmp: str):
    data, _ = read_map(EMD)
    rng = np.random.default_rng(0)
    c = np.ascontiguousarray(data[26:74, 26:74, 26:74])

    def put(name, volume, voxel=1.05, origin=(0.0, 0.0, 0.0)):
        return write_map(os.path.join(tmp, name), np.asarray(volume, np.float32),
                         MapGrid(volume.shape, (voxel,) * 3, origin), overwrite=True)

    noisy = c[:40, :44, :48] + c.std() * rng.standard_normal((40, 44, 48))
    yield "noisy 40x44x48 crop", ["-i", put("noisy.mrc", noisy)]
    yield "noisy crop, --tiling original", ["-i", os.path.join(tmp, "noisy.mrc"), "--tiling", "original"]
    yield "inverted contrast", ["-i", put("inverted.mrc", -c)]
    yield "8-voxel slab", ["-i", put("slab.mrc", c[:8] + 0.01 * rng.standard_normal(c[:8].shape))]
    yield "--protectRadius nan", ["-i", EMD, "--protectRadius", "nan"]
    hot = data.copy()
    hot[3, 4, 5] = 1e30
    yield "one voxel at 1e30", ["-i", put("hot.mrc", hot)]
    yield "map x 1e33", ["-i", put("big.mrc", data * np.float32(1e33))]
    yield "map x 1e-40", ["-i", put("tiny.mrc", data * np.float32(1e-40))]
    complex_map = os.path.join(tmp, "complex.mrc")
    with mrcfile.new(complex_map) as mrc:
        mrc.set_data((c[:16, :16, :16] * (1 + 1j)).astype(np.complex64))
    yield "complex map (mode 4)", ["-i", complex_map]
    h1 = put("h1.mrc", c)
    yield "half origins 10 A apart", ["-i", h1, "-i2", put("h2.mrc", c + 0.01, origin=(10.0, 0.0, 0.0))]
    yield "same file as both halves", ["-i", h1, "-i2", h1]
    mask = put("mask.mrc", (c > c.mean()).astype(np.float32), voxel=2.0, origin=(5.0, 5.0, 5.0))
    yield "mask on another grid", ["-i", h1, "-m", mask]
    stack = put("stack.mrc", c)
    with mrcfile.open(stack, "r+") as mrc:
        mrc.header.mz, mrc.header.cella.z = 1, 50.0
    yield "mz = 1 (z voxel 50 A)", ["-i", stack]
    yield "-s 50 on a 100^3 map", ["-i", EMD, "-s", "50"]
    os.makedirs(os.path.join(tmp, "folder.mrc"), exist_ok=True)
    yield "folder at the output, --overwrite", ["-i", EMD, "--overwrite", "-o", os.path.join(tmp, "folder.mrc")]
    binary = os.path.join(tmp, "model.bin")
    with open(binary, "wb") as f:
        f.write(os.urandom(4096))
    yield "binary file as the model", ["-i", EMD, "--deepLearningModelPath", binary]
    for label, edit in [("filters 'a'", lambda m: m["architecture"].update(filters=["a", 16, 32])),
                        ("voxel_size 0", lambda m: m.update(voxel_size=0)),
                        ("fast_cube 100", lambda m: m.update(fast_cube=100)),
                        ("filters not the weights'", lambda m: m["architecture"].update(filters=[12, 24, 48]))]:
        folder = tempfile.mkdtemp(dir=tmp)
        shutil.copy(os.path.join(PACKAGE_MODELS_DIR, "deepemhancer_tightTarget.weights.h5"), folder)
        with open(os.path.join(PACKAGE_MODELS_DIR, "deepemhancer_tightTarget.json")) as f:
            meta = json.load(f)
        edit(meta)
        with open(os.path.join(folder, "deepemhancer_tightTarget.json"), "w") as f:
            json.dump(meta, f)
        yield f"model metadata: {label}", ["-i", EMD, "--deepLearningModelPath", folder]
    zeros, ones = put("zeros.mrc", np.zeros_like(c)), put("ones.mrc", np.ones_like(c))
    yield "empty binary mask", ["-i", h1, "-m", zeros]
    yield "all-ones binary mask", ["-i", h1, "-m", ones]
    yield "empty protect mask", ["-i", h1, "--protectMask", zeros]
    yield "all-ones protect mask", ["-i", h1, "--protectMask", ones]
    angles = put("angles.mrc", c)
    with mrcfile.open(angles, "r+") as mrc:
        mrc.header.cellb = (0.0, 0.0, 0.0)
    yield "cell angles unset (0, 0, 0)", ["-i", angles]
    junk = os.path.join(tmp, "junk.pdb")
    with open(junk, "wb") as f:
        f.write(os.urandom(4096))
    yield "random bytes as --protectModel", ["-i", h1, "--protectModel", junk]
    yield "output named .txt", ["-i", h1, "-o", os.path.join(tmp, "out.txt")]


def main() -> int:
    print("| case | exit | message | output | inputs unchanged |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (label, args) in enumerate(_cases(tmp)):
            out = os.path.join(tmp, f"out_{n}.mrc")
            if "-o" not in args:
                args = args + ["-o", out]
            else:
                out = args[args.index("-o") + 1]
            inputs = [a for a in args if os.path.isfile(a) and a != out]
            before = {p: _digest(p) for p in inputs}
            done = subprocess.run([sys.executable, "-m", "deepemhancer", *args, "-g", "-1", "--quiet"],
                                  capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
            lines = [line for line in done.stderr.splitlines() if line.startswith("deepemhancer:")]
            message = lines[-1].replace("|", "/")[:160] if lines else ""
            if os.path.isfile(out):
                values = read_map(out)[0]
                verdict = "EMPTY" if not np.any(values) else f"written, SD {values.std():.3g}"
            else:
                verdict = "not written"
            same = all(_digest(p) == h for p, h in before.items())
            traceback = " (traceback!)" if "Traceback" in done.stderr else ""
            print(f"| {label} | {done.returncode}{traceback} | {message} | {verdict} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
