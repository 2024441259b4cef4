"""deepemhancer: deep-learning post-processing of cryo-EM maps (masking + local sharpening in one step).

Flag-compatible with DeepEMhancer 0.17 (same names, meanings and defaults), plus --tiling, --overwrite, --quiet,
--backend, --selfcheck, --summaryJson, and what the original lacks: --preserveHalves (processed halves + a
confidence map), --localResolution, --protectMask / --protectModel (keep ligands, lipids, glycans), --erasedMap
(where clear input density is missing from the output; every run checks it and names such regions in a note),
--keepUnsupported (with half maps, output density where the halves show only noise is damped unless this is given).
The output lies exactly on the input's grid (shape, voxel size, origin).

Examples:
  deepemhancer -i half1.mrc -i2 half2.mrc -o post.mrc
  deepemhancer -i map.mrc -o post.mrc -p wideTarget --noiseStats 0.001 0.02
  deepemhancer -i map.mrc -o post.mrc -m mask.mrc -g -1 -b 4
  deepemhancer -i half1.mrc -i2 half2.mrc -o post.mrc --preserveHalves --localResolution --protectModel fit.cif
  deepemhancer --selfcheck -g -1          # is this environment sound? (seconds; exit 2 with the fix if not)

Exit codes: 0 success, 2 bad input (the message says what to fix), 1 internal error.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import traceback

from . import ORIGINAL_VERSION, __version__
from .errors import InputError

DEFAULT_DOWNLOAD_DIR = os.path.expanduser("~/.local/share/deepEMhancerModels")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepemhancer", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("input and output")
    io.add_argument("-i", "--inputMap", help="input map: an unmasked, unsharpened map, or half map 1 (.mrc/.map)")
    io.add_argument("-i2", "--halfMap2", help="half map 2; averaged with -i (recommended: raw half maps)")
    io.add_argument("-o", "--outputMap", help="output map (.mrc/.map); must not exist unless --overwrite")
    io.add_argument("-s", "--samplingRate", type=float, help="voxel size in A/voxel; overrides the header")
    io.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    model = parser.add_argument_group("model and normalisation")
    model.add_argument("-p", "--processingType", default="tightTarget",
                       choices=["tightTarget", "wideTarget", "highRes"],
                       help="model: tightTarget (default, tight mask), wideTarget (conservative, wider mask), "
                            "highRes (maps better than 3 A; with half maps better than that, tightTarget prints "
                            "a note advising it). Default: %(default)s")
    model.add_argument("--noiseStats", nargs=2, type=float, metavar=("NOISE_MEAN", "NOISE_STD"),
                       help="solvent noise mean and SD in map units; default: measured automatically")
    model.add_argument("-m", "--binaryMask", help="binary mask of the molecule: mask normalisation + masked model")
    model.add_argument("--deepLearningModelPath",
                       help="model file (.json of ours, or an official .hd5) or a folder holding models; default: "
                            "$DEEPEMHANCER_MODELS_DIR, the shipped models, then "
                            "~/.local/share/deepEMhancerModels/production_checkpoints")
    model.add_argument("--cleaningStrengh", type=float, default=-1,
                       help="remove blobs smaller than this fraction of the foreground (0-1); -1 = off. "
                            "Default: %(default)s")
    beyond = parser.add_argument_group("beyond the original")
    beyond.add_argument("--preserveHalves", action="store_true",
                        help="process the two half maps independently (needs -i2); also writes <output>_half1, "
                             "<output>_half2 (for FSC / local resolution after processing) and <output>_confidence "
                             "(0..1: probability that the local error is below 0.1 x the peak density, from the "
                             "disagreement of the processed halves); the output is their average")
    beyond.add_argument("--localResolution", action="store_true",
                        help="also write <output>_locres: local resolution (A) of the input half maps by windowed "
                             "FSC (needs -i2)")
    beyond.add_argument("--protectMask", metavar="MASK",
                        help="soft mask (0..1, on the map's grid) where input density is kept, e.g. ligands, lipids, "
                             "glycans that the model would suppress")
    beyond.add_argument("--protectModel", metavar="PDB_OR_CIF",
                        help="keep input density within --protectRadius of the ligand atoms (non-polymer, non-water) "
                             "of this fitted model")
    beyond.add_argument("--protectRadius", type=float, default=3.0,
                        help="radius in A around protected atoms. Default: %(default)s")
    beyond.add_argument("--erasedMap", action="store_true",
                        help="also write <output>_erased: a soft mask (0..1) of the clear input density that the "
                             "output no longer shows (6 A low-pass; every run checks it and prints a note naming "
                             "such regions); give it back with --protectMask to keep that density")
    beyond.add_argument("--keepUnsupported", action="store_true",
                        help="with -i2: keep output density where the two half maps show only noise (8 A low-pass "
                             "of their average below 3 SD of their difference's, more than 5 A away); by default it "
                             "is damped, as the network cannot tell low-resolution noise from weak real density")
    beyond.add_argument("--summaryJson", metavar="FILE.json",
                        help="also write what was done as JSON: model (path, kind, weights SHA-256), runtime, "
                             "tiling, cubes, seconds, noise statistics, retention and missing regions, notes (for "
                             "workflow managers, e.g. the Scipion protocol's summary)")
    compute = parser.add_argument_group("computation")
    compute.add_argument("-g", "--gpuIds", default="0",
                         help="GPU ids, comma separated; -1 = CPU; all = every GPU of the job. Default: %(default)s "
                              "(the CPU is used when no GPU is present)")
    compute.add_argument("-b", "--batch_size", type=int, default=8,
                         help="64^3 cubes per step per GPU (larger cubes of the fast tiling count as several); "
                              "lower it on out-of-memory errors. Default: %(default)s")
    compute.add_argument("--tiling", default="fast", choices=["fast", "original"],
                         help="fast: the model's large cubes with a thin smooth-blended overlap, empty cubes "
                              "skipped (default; same output as original for the shipped models); original: "
                              "DeepEMhancer 0.17's 64^3 cubes at stride 16 with uniform averaging")
    compute.add_argument("--backend", default=os.environ.get("DEEPEMHANCER_BACKEND") or "auto",
                         choices=["auto", "openvino", "tensorflow", "torch", "jax"],
                         help="runtime of the network: openvino (CPU only, the fastest there) or a Keras backend; "
                              "auto = openvino on the CPU when installed, else $KERAS_BACKEND, else torch if "
                              "installed (one GPU), else tensorflow. Official .hd5 checkpoints always run on Keras. "
                              "Default: $DEEPEMHANCER_BACKEND, else auto")
    compute.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    other = parser.add_argument_group("other")
    other.add_argument("--download", nargs="?", const=DEFAULT_DOWNLOAD_DIR, metavar="DOWNLOAD_DEST",
                       help="download the official DeepEMhancer checkpoints (internet needed) into DOWNLOAD_DEST "
                            "(default %s) and exit" % DEFAULT_DOWNLOAD_DIR)
    other.add_argument("--selfcheck", action="store_true",
                       help="check this environment (versions, runtime, threads, GPUs, models with checksums, and "
                            "a few seconds' run on a built-in map compared with the model's stored reference) and "
                            "exit: 0 if sound, 2 with one line per problem and its fix. Honours -g, --backend and "
                            "--deepLearningModelPath")
    other.add_argument("--quick", action="store_true", help="with --selfcheck: skip the end-to-end run")
    other.add_argument("--version", action="version",
                       version=f"deepemhancer {__version__} (flags of DeepEMhancer {ORIGINAL_VERSION})")
    return parser


def _validate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.download is not None or args.selfcheck:
        return
    numbers = {"-s/--samplingRate": args.samplingRate, "--cleaningStrengh": args.cleaningStrengh,
               "--protectRadius": args.protectRadius}
    numbers.update({f"--noiseStats {name}": value for name, value in zip(("NOISE_MEAN", "NOISE_STD"),
                                                                         args.noiseStats or ())})
    for flag, value in numbers.items():
        if value is not None and not math.isfinite(value):
            parser.error(f"{flag} must be a finite number, got {value}")
    if not args.inputMap:
        parser.error("-i/--inputMap is required (a map or half map 1)")
    if not args.outputMap:
        parser.error("-o/--outputMap is required")
    if args.binaryMask and args.noiseStats:
        parser.error("--noiseStats and -m/--binaryMask are exclusive")
    if args.binaryMask and args.processingType != "tightTarget":
        parser.error("-p cannot be used with -m/--binaryMask (the mask mode has its own model)")
    if args.noiseStats and args.noiseStats[1] <= 0:
        parser.error(f"--noiseStats NOISE_STD must be positive, got {args.noiseStats[1]}")
    if args.cleaningStrengh is not None and args.cleaningStrengh >= 1:
        parser.error(f"--cleaningStrengh must be < 1 (a fraction of the foreground), got {args.cleaningStrengh}")
    if args.batch_size < 1:
        parser.error(f"-b/--batch_size must be at least 1, got {args.batch_size}")
    if args.samplingRate is not None and args.samplingRate <= 0:
        parser.error(f"-s/--samplingRate must be positive, got {args.samplingRate}")
    if (args.preserveHalves or args.localResolution) and not args.halfMap2:
        parser.error("--preserveHalves and --localResolution need the two half maps (-i half1 -i2 half2)")
    if args.protectRadius <= 0:
        parser.error(f"--protectRadius must be positive, got {args.protectRadius}")


def run(args: argparse.Namespace) -> int:
    if args.selfcheck:
        from . import selfcheck
        return selfcheck.run(args.gpuIds, args.backend, args.deepLearningModelPath, quick=args.quick)
    from . import devices
    backend, n_gpus = devices.configure(args.gpuIds, args.backend)
    if args.download is not None:
        from .models.download import download_official_models
        folder = download_official_models(args.download)
        print(f"official checkpoints in {folder}")
        return 0
    from .api import EnhanceOptions, enhance_file
    if args.summaryJson:  # refused before the work, like the maps
        from .io import check_output_path
        check_output_path(args.summaryJson, overwrite=args.overwrite, extensions=(".json",),
                          inputs=(args.inputMap, args.halfMap2, args.binaryMask, args.protectMask))
    options = EnhanceOptions(
        processing_type=args.processingType, model_path=args.deepLearningModelPath,
        noise_stats=tuple(args.noiseStats) if args.noiseStats else None,
        cleaning_strength=args.cleaningStrengh if args.cleaningStrengh and args.cleaningStrengh > 0 else None,
        batch_size=args.batch_size * max(1, n_gpus), tiling=args.tiling, progress=not args.quiet,
        preserve_halves=args.preserveHalves, local_resolution=args.localResolution, erased_map=args.erasedMap,
        damp_unsupported=not args.keepUnsupported, gpus=max(1, n_gpus),
        runtime="openvino" if backend == "openvino" else "keras")
    result = enhance_file(args.inputMap, args.outputMap, half2=args.halfMap2, mask_path=args.binaryMask,
                          sampling=args.samplingRate, options=options, protect_mask_path=args.protectMask,
                          protect_model_path=args.protectModel, protect_radius=args.protectRadius,
                          overwrite=args.overwrite)
    for note in result.notes:
        print(f"deepemhancer: note: {note}", file=sys.stderr)
    if args.summaryJson:
        _write_summary(args.summaryJson, args, result)
    if not args.quiet:
        stats = result.noise_stats
        noise = f"noise mean {stats.mean:.5g} SD {stats.std:.5g} ({stats.method})" if stats else "mask normalisation"
        retention = result.erased.retention
        shows = "" if math.isnan(retention) else f"shows {100 * retention:.0f} % of the input's clear density; "
        print(f"wrote {args.outputMap}: {noise}; model {result.model_path}; {result.cubes_evaluated} of "
              f"{result.cubes_total} cubes ({args.tiling} tiling, {result.runtime}); {shows}{result.seconds:.1f} s",
              file=sys.stderr)
    return 0


def _write_summary(path: str, args: argparse.Namespace, result) -> None:
    import json
    from .io import write_text
    from .models import read_metadata
    from .selfcheck import weights_sha256
    model = {"path": result.model_path}
    if result.model_path.endswith(".json"):
        metadata, weights = read_metadata(result.model_path)
        model.update(kind=metadata.kind, weights_sha256=weights_sha256(weights),
                     filters=list(metadata.architecture.get("filters", [])))
    stats = result.noise_stats
    erased = result.erased
    summary = {"engine": __version__, "input": args.inputMap, "half_map_2": args.halfMap2, "output": args.outputMap,
               "model": model, "runtime": result.runtime, "tiling": args.tiling,
               "cubes_evaluated": result.cubes_evaluated, "cubes_total": result.cubes_total,
               "seconds": round(result.seconds, 2),
               "noise_stats": None if stats is None else {"mean": stats.mean, "std": stats.std, "method": stats.method},
               # what of the input's clear (6 A) density the output shows; regions at voxel (x, y, z) of the input
               "retention": None if math.isnan(erased.retention) else round(erased.retention, 4),
               "missing_regions": [{"volume_A3": round(r.volume), "voxel_xyz": [round(c, 1) for c in r.centre],
                                    "strength_sd": round(r.strength, 1)} for r in erased.regions],
               "notes": list(result.notes)}
    write_text(path, json.dumps(summary, indent=1) + "\n", overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (0 ok, 2 bad input, 1 internal error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, -h/--version exit 0
        return int(exc.code or 0)
    try:
        _validate_args(parser, args)
    except SystemExit as exc:
        return int(exc.code or 0)
    # a queue's SIGTERM (scancel, time limit) unwinds like Ctrl-C, so partial outputs are removed on the way out
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return run(args)
    except Terminated:
        print("deepemhancer: terminated (SIGTERM); no output written", file=sys.stderr)
        return 143
    except InputError as exc:
        print(f"deepemhancer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepemhancer: interrupted; no output written", file=sys.stderr)
        return 130
    except MemoryError:
        print("deepemhancer: error: out of memory; lower -b/--batch_size or use a machine with more RAM",
              file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - report any internal failure with its traceback and exit 1
        traceback.print_exc()
        print("deepemhancer: internal error (above); please report it with the command line you used",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM arrived: raised where the program is, so every ``finally`` (temporary files) runs."""


def _terminate(signum, frame):
    raise Terminated()


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
