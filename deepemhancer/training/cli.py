"""``deepemhancer-train``: make training pairs, train a model, measure it.

Example usage::

    # pairs from atomic models (split from MANIFEST.tsv), cached in a folder
    deepemhancer-train prepare --models ../shared/data/atomic_models -o work-data/pairs
    # real pairs (NAME_half1/2.mrc or NAME_input.mrc + NAME_target.mrc [+ NAME_mask.mrc])
    deepemhancer-train prepare --real-pairs my_emdb_pairs -o work-data/pairs --split train
    # train (rerun the same command to resume from the last checkpoint)
    KERAS_BACKEND=torch deepemhancer-train fit --pairs work-data/pairs --kind tightTarget -o work-data/run_tight
    # a running campaign's best checkpoint as a model, to evaluate it while it trains
    deepemhancer-train export --run work-data/run_tight -o work-data/tight_now
    # CC with the target of input and output on the val/test pairs
    deepemhancer-train evaluate --pairs work-data/pairs --model work-data/run_tight/final --split test
"""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError


def _add_prepare(sub):
    p = sub.add_parser("prepare", help="simulate (or import) training pairs into a folder with index.json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--models", help="folder of PDB/mmCIF files (with MANIFEST.tsv for the train/val/test split)")
    src.add_argument("--real-pairs", help="folder of real pairs NAME_half1.mrc+NAME_half2.mrc (or NAME_input.mrc), "
                                          "NAME_target.mrc, optional NAME_mask.mrc")
    p.add_argument("-o", "--output", required=True, help="output folder (a cache: existing pairs are kept)")
    p.add_argument("--variants", default="train=2,val=2,test=2",
                   help="simulated maps per structure and split (default %(default)s)")
    p.add_argument("--resolution", nargs=2, type=float, default=(2.5, 7.0), metavar=("BEST", "WORST"),
                   help="range of half-map FSC=0.143 resolutions in A (default 2.5 7)")
    p.add_argument("--split", default="train", help="split of --real-pairs (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--mrc-splits", default="val,test",
                   help="splits for which half maps/ground truth are also written as MRC (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N jobs (quick tests)")
    p.add_argument("--solvent-share", type=float, default=0.85,
                   help="fraction of maps showing the ice the molecule displaced (simulator step 4b; default "
                        "%(default)s; 0: in-vacuo maps, as every map made before that step)")


def _add_fit(sub):
    p = sub.add_parser("fit", help="train a model on prepared pairs (resumes from the last checkpoint)")
    p.add_argument("--pairs", required=True, nargs="+", help="prepared folder(s)")
    p.add_argument("-o", "--output", required=True, help="run folder: checkpoints, log.csv, final model")
    p.add_argument("--kind", default="tightTarget", choices=("tightTarget", "wideTarget", "highRes", "masked"))
    p.add_argument("--filters", default="16,32,64", help="U-Net widths per level (paper: 32,64,128)")
    p.add_argument("--convs-per-block", type=int, default=2, help="paper: 3")
    p.add_argument("--norm-layer", default="group", choices=("group", "none"),
                   help="group: group normalisation as in the paper; none: no normalisation layers, so the output "
                        "does not depend on the tiling (with --init-weights from a group model, its normalisation "
                        "is folded into the convolutions first). Default: %(default)s")
    p.add_argument("--input-gain", default=None, choices=("envelope_p99",),
                   help="divide each map by its signal level (99th percentile inside the envelope) before the "
                        "network, at training and inference; meant for --norm-layer none")
    p.add_argument("--cube", type=int, default=32, help="training cube side in voxels (paper: 64)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--inference-tiling", metavar="CUBE/STRIDE", default=None,
                   help="cube and stride of the original tiling, stored in the model (default: training cube, a "
                        "quarter of it; DeepEMhancer's: 64/16)")
    p.add_argument("--fast-tiling", metavar="CUBE/STRIDE", default=None,
                   help="cube and stride of the fast (default) tiling, stored in the model (default: the original "
                        "tiling's cube, half of it); measure candidates with benchmarks/benchmark_tiling.py")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--val-cubes", type=int, default=48, help="fixed validation cubes")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--keep-weight", type=float, default=0.0,
                   help="extra cost of an output below the target where the target has density (loss: MAE + W x "
                        "mean shortfall there), against erasing weak modelled density (default 0: plain MAE)")
    p.add_argument("--shell-weight", type=float, default=0.0,
                   help="weight of a per-cube FSC term (mean over Fourier shells of 1 - the output's correlation "
                        "with the target), for detail that MAE hardly sees (default 0: off)")
    p.add_argument("--signal-fraction", type=float, default=None,
                   help="fraction of cubes centred on the molecule (default: 0.75, highRes 0.9)")
    p.add_argument("--noise-cubes", type=float, default=0.0,
                   help="fraction of training cubes that are pure correlated noise with target 0 (default 0)")
    p.add_argument("--noise-augment", type=float, default=0.0,
                   help="fraction of the other cubes whose input gets the same kind of noise (default 0)")
    p.add_argument("--noise-sd", nargs=2, type=float, default=(0.02, 0.2), metavar=("MIN", "MAX"),
                   help="SD range of that noise, in network input units (default 0.02 0.2; stronger or smoother "
                        "noise teaches the network to erase weak real density)")
    p.add_argument("--noise-blur", nargs=2, type=float, default=(0.5, 1.0), metavar=("MIN", "MAX"),
                   help="Gaussian blur of that noise in voxels (default 0.5 1.0: unfiltered half-map solvent)")
    p.add_argument("--mask-dilation", nargs=2, type=int, default=(0, 0), metavar=("MIN", "MAX"),
                   help="masked kind: grow the binary mask the input is normalised in by MIN-MAX voxels, one draw "
                        "per map (default 0 0: the model's wide envelope; users' masks are wider)")
    p.add_argument("--zoom", nargs=2, type=float, default=(1.0, 1.0), metavar=("MIN", "MAX"),
                   help="draw training cubes at finer grids: a region of cube/z voxels resampled up to the cube, z "
                        "uniform in MIN-MAX (default 1 1: the 1 A grid only; 1 1.35 covers grids down to 0.74 A)")
    p.add_argument("--sharp-below", nargs=2, type=float, default=None, metavar=("HI", "LO"),
                   help="tightTarget, masked: blend highRes' sharper target into pairs whose half maps are finer "
                        "than HI A, weight (HI - d)/(HI - LO), all of it at LO (default: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-parallel", action="store_true",
                   help="replicate over all accelerators with keras.distribution.DataParallel (JAX backend)")
    p.add_argument("--init-weights", metavar="MODEL", default=None,
                   help="start a new run from this model's weights (.json or .weights.h5; same architecture): "
                        "fine-tuning, e.g. wideTarget from tightTarget")
    p.add_argument("--install", metavar="MODELS_DIR", default=None,
                   help="also save the final model as deepemhancer_<kind> into this folder")
    p.add_argument("--quiet", action="store_true")


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="CC with the target of input and output on prepared pairs")
    p.add_argument("--pairs", required=True)
    p.add_argument("--model", required=True, help="model file or folder (deepemhancer_<kind>.weights.h5 + .json)")
    p.add_argument("--kind", default="tightTarget")
    p.add_argument("--split", default="test")
    p.add_argument("--csv", default=None, help="write the per-pair table here")
    p.add_argument("--tiling", default="fast", choices=("fast", "original"))


def _add_export(sub):
    p = sub.add_parser("export", help="save a run's best (or last) checkpoint as a model, while it trains")
    p.add_argument("--run", required=True, help="run folder of `fit`")
    p.add_argument("-o", "--output", required=True, help="folder for deepemhancer_<kind>.json + .weights.h5")
    p.add_argument("--which", default="best", choices=("best", "last"))


def _tiling(prefix: str, value: str | None) -> dict:
    """``CUBE/STRIDE`` -> TrainConfig fields ``<prefix>_cube`` and ``<prefix>_stride``."""
    if value is None:
        return {}
    try:
        cube, stride = (int(v) for v in value.split("/"))
    except ValueError:
        raise InputError(f"tiling {value!r} must be CUBE/STRIDE, e.g. 64/16") from None
    return {f"{prefix}_cube": cube, f"{prefix}_stride": stride}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="deepemhancer-train", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("Example usage::", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_fit(sub)
    _add_evaluate(sub)
    _add_export(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            from . import prepare
            if args.models:
                variants = {k: int(v) for k, v in (item.split("=") for item in args.variants.split(","))}
                path = prepare.prepare_simulated(args.models, args.output, variants=variants, seed=args.seed,
                                                 resolution_range=tuple(args.resolution), workers=args.workers,
                                                 mrc_splits=tuple(s for s in args.mrc_splits.split(",") if s),
                                                 limit=args.limit, solvent_share=args.solvent_share)
            else:
                path = prepare.prepare_real(args.real_pairs, args.output, split=args.split)
            print(f"index: {path}")
        elif args.command == "fit":
            from . import train
            cfg = train.TrainConfig(
                kind=args.kind, filters=tuple(int(f) for f in args.filters.split(",")),
                convs_per_block=args.convs_per_block, norm_layer=args.norm_layer, input_gain=args.input_gain,
                cube=args.cube, batch=args.batch, epochs=args.epochs,
                steps_per_epoch=args.steps_per_epoch, val_cubes=args.val_cubes, lr=args.lr,
                keep_weight=args.keep_weight, shell_weight=args.shell_weight, seed=args.seed,
                signal_fraction=args.signal_fraction, noise_cubes=args.noise_cubes,
                noise_augment=args.noise_augment, noise_sd=tuple(args.noise_sd),
                noise_blur=tuple(args.noise_blur), mask_dilation=tuple(args.mask_dilation),
                zoom=tuple(args.zoom), sharp_below=args.sharp_below and tuple(args.sharp_below),
                data_parallel=args.data_parallel,
                init_weights=args.init_weights, **_tiling("inference", args.inference_tiling),
                **_tiling("fast", args.fast_tiling))
            train.fit(args.pairs, args.output, cfg, install_dir=args.install, verbose=not args.quiet)
        elif args.command == "export":
            from . import train
            print(f"model: {train.export_checkpoint(args.run, args.output, args.which)}")
        elif args.command == "evaluate":
            from . import train
            rows = train.evaluate(args.pairs, args.model, kind=args.kind, split=args.split, csv_path=args.csv,
                                  tiling=args.tiling)
            for r in rows:
                print("\t".join(str(v) for v in r.values()))
    except InputError as exc:
        print(f"deepemhancer-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
