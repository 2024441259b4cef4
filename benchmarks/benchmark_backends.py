"""Network time per 64^3 cube on this machine for each Keras backend and a few U-Net widths.

Each backend runs in its own process (Keras fixes its backend at import). Prints a markdown table.

    python benchmarks/benchmark_backends.py [--backends torch tensorflow] [--cube 64] [--batch 4]
"""

import argparse
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"quarter (8/16/32, 2 convs)": "dict(filters=(8, 16, 32), convs_per_block=2)",
           "half (16/32/64, 2 convs)": "dict(filters=(16, 32, 64), convs_per_block=2)",
           "paper (32/64/128, 3 convs)": "dict()"}

CODE = """
import sys, time, numpy as np
sys.path.insert(0, {repo!r})
from deepemhancer.network import UNetConfig, build_unet
model = build_unet(UNetConfig(**{config}))
x = np.random.default_rng(0).standard_normal(({batch}, {cube}, {cube}, {cube}, 1)).astype(np.float32)
model.predict_on_batch(x)
t = time.perf_counter()
for _ in range({repeats}):
    model.predict_on_batch(x)
print((time.perf_counter() - t) / ({repeats} * {batch}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "tensorflow"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS)[:2], choices=list(CONFIGS))
    parser.add_argument("--cube", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    results = {}
    for name in args.configs:
        for backend in args.backends:
            env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="3")
            code = CODE.format(repo=REPO, config=CONFIGS[name], batch=args.batch, cube=args.cube,
                               repeats=args.repeats)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            results[name, backend] = float(out.stdout.strip().splitlines()[-1])
            print(f"{name} {backend}: {results[name, backend]:.3f} s/cube", flush=True)
    print(f"\n| network | " + " | ".join(f"{b} s/cube" for b in args.backends) + " | ratio |")
    print("|---|" + "---|" * (len(args.backends) + 1))
    for name in args.configs:
        times = [results[name, b] for b in args.backends]
        print(f"| {name} | " + " | ".join(f"{t:.3f}" for t in times) + f" | {max(times) / min(times):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
