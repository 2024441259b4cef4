"""Does the confidence map predict the real error, and does the protect mask keep a blob the model removes?

On the synthetic test split (pairs prepared by `deepemhancer-train prepare`, with their half maps and noise-free
targets as MRC files), each map is processed with --preserveHalves by the Python API (same code path as the
command). The truth is the tight target (highRes: its own sharper target, :func:`truth`). The output is brought to
the target's scale by a least-squares fit inside the model envelope; over the
voxels near the molecule (the envelope dilated by 4 A), where a user looks, it reports the Spearman correlation
between (1 - confidence) and the absolute error (per voxel, and the error averaged in a 1 A Gaussian window), and
the calibration: in bins of confidence, the observed fraction of voxels whose error is below 0.1 x the peak density
(what the confidence claims to be).

Then a blob of non-protein density is added to both halves 6-9 A from the molecule and the map is processed with and
without a protect mask around it. Reported: the blob's contrast (its core's mean over the molecule's 90th percentile)
in the output relative to the input: 1 = kept as it was, 0 = removed. Two blobs: lipid-like (a 3 A Gaussian peaking at 0.6 x the mean protein density, like
the detergent and lipid blobs of the training data, which the targets exclude) and ligand-strength (a 5 A Gaussian
as strong as the protein's 90th percentile).

    python benchmarks/benchmark_confidence.py --pairs work-data/pairs [--model DIR] [--limit 10]
    python benchmarks/benchmark_confidence.py --split val --limit 10 --fit-calibration [--store]
        # fit the model's calibration; --store writes it into the model's metadata (confidence_calibration)

A masked model (normalisation "mask", what ``-m`` runs) is given, as its mask, the pair's model envelope grown by
``--mask-margin`` A: users' masks (RELION's automatic one, a threshold of the map) are wider than the envelope.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from scipy import ndimage, stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from deepemhancer import devices  # noqa: E402


LIPID_LEVEL, LIPID_SIGMA = 0.6, 3.0   # x mean protein density, A
LIGAND_SIGMA = 5.0                     # A; peak = 90th percentile of the protein density
CONFIDENT_ERROR = 0.1                  # x peak density: what the confidence is the probability of


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(a, b).statistic)


def truth(kind: str, tight_path: str, stored_path: str, shape) -> np.ndarray:
    """What the output is scored against, on the map's grid. highRes: its own target, sharper than the others
    (``targets.py``; against the tight one its extra sharpness counted as error), stored only on the 1 A grid in the
    pair's ``.npz`` (``stored_path``) and Fourier-resampled to the map's grid as the command resamples its output.
    Every other kind: the pair's ``target_tight`` MRC at ``tight_path`` (wideTarget's own target adds unmodelled
    density, which is not scored here)."""
    from deepemhancer.io import read_map
    from deepemhancer.resample import resample_to_shape
    if kind == "highRes":
        with np.load(stored_path) as stored:
            return resample_to_shape(stored["target_sharp"].astype(np.float32), shape)
    return read_map(tight_path)[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=os.path.join(REPO, "work-data", "pairs"))
    parser.add_argument("--model", help="model folder or file (default: the shipped tightTarget)")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--split", default="test")
    parser.add_argument("--fit-calibration", action="store_true",
                        help="only the confidence part, then fit the calibration of deepemhancer.confidence to these "
                             "maps (run on --split val) and print it")
    parser.add_argument("--store", action="store_true",
                        help="with --fit-calibration: write the fitted calibration into the model's metadata file")
    parser.add_argument("--mask-margin", type=float, default=5.0,
                        help="for a masked model: the mask given with -m is the model envelope grown by this many A")
    args = parser.parse_args(argv)
    devices.configure("-1")
    from deepemhancer.api import EnhanceOptions, enhance
    from deepemhancer.confidence import calibration_of
    from deepemhancer.io import read_map
    from deepemhancer.models import find_model, load_model
    from deepemhancer.protect import intensity_scale

    model = load_model(find_model("tightTarget", args.model))
    masked = model.metadata.normalization == "mask"
    index = json.load(open(os.path.join(args.pairs, "index.json")))
    pairs = [p for p in index["pairs"] if p["split"] == args.split and "mrc" in p][: args.limit]
    rows, calibration = [], []
    for pair in pairs:
        paths = {k: os.path.join(args.pairs, v) for k, v in pair["mrc"].items()}
        h1, grid = read_map(paths["half1"])
        h2, _ = read_map(paths["half2"])
        target = truth(model.metadata.kind, paths["target_tight"], os.path.join(args.pairs, pair["file"]), h1.shape)
        envelope = read_map(paths["envelope"])[0] > 0.5
        voxel = grid.voxel_size[0]
        mask = (ndimage.binary_dilation(envelope, iterations=max(1, int(round(args.mask_margin / voxel))))
                if masked else None)
        result = enhance(h1, grid.voxel_size, half2=h2, mask=mask, model=model,
                         options=EnhanceOptions(preserve_halves=True, progress=False))
        a, b = intensity_scale(result.data, target, envelope)
        error = np.abs(a * result.data + b - target)
        near = ndimage.binary_dilation(envelope, iterations=max(1, int(round(4 / voxel))))
        rho = spearman(1.0 - result.confidence[near], error[near])
        rho_local = spearman(1.0 - result.confidence[near],
                             ndimage.gaussian_filter(error, max(0.5, 1.0 / voxel))[near])
        peak = abs(a) * float(ndimage.gaussian_filter(np.abs(result.data), max(0.5, 1.0 / voxel)).max())
        calibration.append((result.confidence[near], error[near] < CONFIDENT_ERROR * peak))
        cc = float(np.corrcoef(result.data.ravel(), target.ravel())[0, 1])
        cc_in = float(np.corrcoef(((h1 + h2) / 2).ravel(), target.ravel())[0, 1])
        if args.fit_calibration:
            print(f"{pair['name']}: CC input {cc_in:.3f} output {cc:.3f}, Spearman {rho:.3f} / 1 A {rho_local:.3f}",
                  flush=True)
            continue

        # protect: a blob of non-protein density beside the molecule, in both halves (see the module docstring)
        com = np.array(ndimage.center_of_mass(envelope))
        to_molecule = ndimage.distance_transform_edt(~envelope) * voxel
        idx = np.indices(h1.shape)
        to_face = np.min([np.minimum(i, n - 1 - i) for i, n in zip(idx, h1.shape)], axis=0) * voxel
        candidates = np.argwhere((to_molecule > 6) & (to_molecule < 9) & (to_face > 8))
        if not len(candidates):
            rows.append((pair["name"], pair.get("fsc_resolution"), cc_in, cc, rho, rho_local) + (float("nan"),) * 4)
            continue
        centre = candidates[np.argmin(np.linalg.norm(candidates - com, axis=1))]
        r2 = sum(((i - c) * voxel) ** 2 for i, c in zip(idx, centre))
        average = (h1 + h2) / 2
        zone = np.clip((8.0 - np.sqrt(r2)) / 2.0, 0, 1).astype(np.float32)
        core = r2 < 3.0 ** 2
        ratios = []
        for peak, sigma in ((LIPID_LEVEL * float(average[envelope].mean()), LIPID_SIGMA),
                            (float(np.percentile(average[envelope], 90)), LIGAND_SIGMA)):
            blob = (peak * np.exp(-r2 / (2 * sigma ** 2))).astype(np.float32)
            with_blob = average + blob
            contrast_in = with_blob[core].mean() / np.percentile(with_blob[envelope], 90)
            for protect in (None, zone):
                out = enhance(h1 + blob, grid.voxel_size, half2=h2 + blob, mask=mask, model=model, protect=protect,
                              options=EnhanceOptions(progress=False)).data
                # the blob's contrast against the molecule, relative to the input's: 1 = kept as it was, 0 = removed
                ratios.append(float(out[core].mean() / np.percentile(out[envelope], 90) / contrast_in))
        rows.append((pair["name"], pair.get("fsc_resolution"), cc_in, cc, rho, rho_local, *ratios))
        print(f"{pair['name']}: FSC res {pair.get('fsc_resolution')}, CC input {cc_in:.3f} output {cc:.3f}, "
              f"Spearman(1-confidence, |error|) {rho:.3f} (1 A error {rho_local:.3f}); blob kept: lipid-like "
              f"{ratios[0]:.2f} -> protected {ratios[1]:.2f}, ligand-strength {ratios[2]:.2f} -> {ratios[3]:.2f}",
              flush=True)
    if args.fit_calibration:
        x0, power = fit_calibration(np.concatenate([c for c, _ in calibration]),
                                    np.concatenate([o for _, o in calibration]),
                                    calibration_of(model.metadata.confidence_calibration))
        if args.store:
            from deepemhancer.models import write_metadata
            model.metadata.confidence_calibration = {
                "x0": round(x0, 4), "power": round(power, 3),
                "fitted_on": f"{len(pairs)} maps of split {args.split!r} of {os.path.basename(args.pairs.rstrip('/'))}"
                             + (", against its own sharper target" if model.metadata.kind == "highRes" else "")}
            print(f"stored in {write_metadata(model.metadata, model.path)}")
        return 0
    print("\n| map | half-map FSC res (A) | CC input | CC output | Spearman(1-conf, abs error) | same, 1 A error | "
          "lipid-like blob kept (default) | protected | ligand-strength blob kept (default) | protected |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | " + " | ".join(f"{x:.3f}" if i < 4 else f"{x:.2f}" for i, x in enumerate(r[2:]))
              + " |")
    med = np.nanmedian(np.array([r[2:] for r in rows], dtype=float), axis=0)
    print("| **median** | | " + " | ".join(f"{x:.3f}" if i < 4 else f"{x:.2f}" for i, x in enumerate(med)) + " |")
    confidence = np.concatenate([c for c, _ in calibration])
    ok = np.concatenate([o for _, o in calibration])
    print(f"\nCalibration over {len(pairs)} maps ({confidence.size} voxels near the molecule): "
          f"P(error < {CONFIDENT_ERROR} x peak) observed per confidence bin")
    print("| confidence | voxels | mean confidence | observed |")
    print("|---|---|---|---|")
    edges = np.linspace(0, 1, 6)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (confidence >= lo) & ((confidence < hi) if hi < 1 else (confidence <= hi))
        if sel.any():
            print(f"| {lo:.1f}-{hi:.1f} | {int(sel.sum())} | {confidence[sel].mean():.2f} | {ok[sel].mean():.2f} |")
    return 0


def fit_calibration(confidence: np.ndarray, ok: np.ndarray, current: tuple[float, float]) -> tuple[float, float]:
    """Fit P(ok) = 1 / (1 + (x / x0) ** power) by maximum likelihood, x = the predicted error behind each confidence
    (the model's ``current`` calibration inverted); returns ``(x0, power)``."""
    from scipy.optimize import minimize

    x0_now, power_now = current
    c = np.clip(confidence.astype(np.float64), 1e-6, 1 - 1e-6)
    x = x0_now * ((1 - c) / c) ** (1 / power_now)

    def loss(params):
        p = np.clip(1 / (1 + (x / np.exp(params[0])) ** params[1]), 1e-9, 1 - 1e-9)
        return -np.mean(np.where(ok, np.log(p), np.log(1 - p)))

    best = minimize(loss, [np.log(x0_now), power_now], method="Nelder-Mead")
    x0, power = float(np.exp(best.x[0])), float(best.x[1])
    current_likelihood = -loss([np.log(x0_now), power_now])
    print(f"\nfitted on {confidence.size} voxels: x0 = {x0:.4f}, power = {power:.3f} (mean log-likelihood "
          f"{-best.fun:.4f}; current calibration {x0_now:.4f}, {power_now:.3f}: {current_likelihood:.4f})")
    return x0, power


if __name__ == "__main__":
    sys.exit(main())
