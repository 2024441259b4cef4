"""Seconds per training step of the U-Net for a few widths and cube sizes, per Keras backend.

Used to choose the shipped architecture for CPU training (see deepemhancer/models/MODEL_CARD.md). Each backend
runs in its own process because Keras fixes the backend at import time.

    python benchmarks/benchmark_training_throughput.py                    # torch and tensorflow, default grid
    python benchmarks/benchmark_training_throughput.py --backends torch --configs half:32 quarter:48 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WIDTHS = {"quarter": ((8, 16, 32), 2), "half": ((16, 32, 64), 2), "paper": ((32, 64, 128), 3)}
DEFAULT = ["quarter:32", "quarter:48", "half:32", "half:48", "paper:32"]


def _measure(width: str, cube: int, batch: int, steps: int) -> dict:
    import numpy as np
    import keras
    from deepemhancer.network import UNetConfig, build_unet
    filters, convs = WIDTHS[width]
    keras.utils.set_random_seed(0)
    model = build_unet(UNetConfig(filters=filters, convs_per_block=convs))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mae")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (batch, cube, cube, cube, 1)).astype("float32")
    y = np.abs(x)
    model.train_on_batch(x, y)  # warm-up (graph building / allocation)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    model.predict_on_batch(x)
    fwd = time.perf_counter() - t0
    return {"backend": keras.backend.backend(), "width": width, "params": model.count_params(), "cube": cube,
            "batch": batch, "s_per_step": step, "s_per_cube_train": step / batch, "s_per_cube_forward": fwd / batch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["torch", "tensorflow"])
    p.add_argument("--configs", nargs="+", default=DEFAULT, help="WIDTH:CUBE with WIDTH in quarter/half/paper")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: the backend's default)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        width, cube = args.worker.split(":")
        print(json.dumps(_measure(width, int(cube), args.batch, args.steps)))
        return 0
    rows = []
    for backend in args.backends:
        for cfg in args.configs:
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
            if args.threads:
                env.update(OMP_NUM_THREADS=str(args.threads), TF_NUM_INTRAOP_THREADS=str(args.threads),
                           TF_NUM_INTEROP_THREADS="1")
            out = subprocess.run([sys.executable, __file__, "--worker", cfg, "--batch", str(args.batch),
                                  "--steps", str(args.steps)], env=env, capture_output=True, text=True)
            if out.returncode:
                print(f"{backend} {cfg} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'backend':<11}{'width':<9}{'params':>10}{'cube':>6}{'batch':>6}{'s/step':>9}{'s/cube train':>14}"
          f"{'s/cube fwd':>12}")
    for r in rows:
        print(f"{r['backend']:<11}{r['width']:<9}{r['params']:>10,}{r['cube']:>6}{r['batch']:>6}{r['s_per_step']:>9.3f}"
              f"{r['s_per_cube_train']:>14.3f}{r['s_per_cube_forward']:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
