"""``deepemhancer-eval``: score a processed map, its input and two baselines against a model or reference map.

Example::

    deepemhancer-eval -i deepEMhancer.mrc --half1 h1.mrc --half2 h2.mrc --model model.cif -o eval/

prints the table and writes ``eval/report.png``, ``eval/report.html``, ``eval/scores.json`` and the baseline maps.
Exit codes: 0 ok, 2 bad input, 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import numpy as np

from ..errors import InputError
from ..io import MapGrid, read_map, write_map
from .compare import evaluate, format_table
from .fsc import local_cc, resolution_at
from .modelmap import fraction_inside, read_model


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepemhancer-eval",
        description="FSC/CC of a processed map, its input, global auto-B sharpening and RELION post-processing "
                    "against an atomic model or a reference map; writes a PNG/HTML report.")
    p.add_argument("-i", "--processed", help="processed map (e.g. the DeepEMhancer output)")
    p.add_argument("--label", default="processed", help="name of the processed map in the table (default %(default)s)")
    p.add_argument("--input", dest="input_map", help="unprocessed input map (default: average of the half maps)")
    p.add_argument("--half1", help="first half map of the input")
    p.add_argument("--half2", help="second half map of the input")
    p.add_argument("--model", help="atomic model (PDB/mmCIF) in the maps' frame")
    p.add_argument("--reference", help="reference map on the same grid (instead of a model)")
    p.add_argument("-m", "--mask", help="mask on the same grid for the 'env' columns (default: model envelope)")
    p.add_argument("--resolution", type=float, help="resolution of the data in A (default: half-map FSC 0.143)")
    p.add_argument("--no-autob", action="store_true", help="skip the auto-B sharpening baseline")
    p.add_argument("--no-relion", action="store_true", help="skip the RELION baseline")
    p.add_argument("--no-maps", action="store_true", help="do not write the baseline and local-CC maps")
    p.add_argument("-o", "--output-dir", default="deepemhancer_eval", help="report folder (default %(default)s)")
    p.add_argument("--title", default="DeepEMhancer evaluation", help="report title")
    return p


def _same_grid(name: str, grid: MapGrid, ref: MapGrid, ref_name: str) -> None:
    if tuple(grid.shape) != tuple(ref.shape):
        raise InputError(f"{name} has shape (z,y,x) {tuple(grid.shape)} but {ref_name} has {tuple(ref.shape)}: all "
                         f"maps must be on the same grid (resample or pad them first, e.g. relion_image_handler).")
    if not np.allclose(grid.voxel_size, ref.voxel_size, rtol=1e-3):
        raise InputError(f"{name} has voxel size {grid.voxel_size} A but {ref_name} has {ref.voxel_size} A.")


def run(args: argparse.Namespace) -> int:
    paths = {"processed": args.processed, "input": args.input_map, "half1": args.half1, "half2": args.half2,
             "reference": args.reference, "mask": args.mask}
    if bool(args.half1) != bool(args.half2):
        raise InputError("give both --half1 and --half2, or neither.")
    if not (args.processed or args.input_map or args.half1):
        raise InputError("nothing to evaluate: give a processed map (-i), an input map (--input) or half maps.")
    if args.model and args.reference:
        raise InputError("give either --model or --reference, not both.")
    maps, grid, first = {}, None, None
    for key, path in paths.items():
        if path:
            data, g = read_map(path)
            if grid is None:
                grid, first = g, path
            else:
                _same_grid(path, g, grid, first)
            maps[key] = data
    if args.resolution is not None and args.resolution <= 0:
        raise InputError("--resolution must be positive (Angstrom).")
    model = None
    if args.model:
        model = read_model(args.model)
        inside = fraction_inside(model, grid)
        print(f"model {args.model}: {100 * inside:.1f} % of the atoms inside the map box")
        if inside < 0.5:
            print("WARNING: most atoms are outside the box: the model is not in the map's frame, or the map's "
                  "origin is wrong. FSC and CC will be meaningless.")
    if "mask" in maps:
        if maps["mask"].min() < -1e-3 or maps["mask"].max() > 1.0 + 1e-3:
            raise InputError(f"mask {args.mask} has values outside [0, 1].")

    ev = evaluate(grid, processed=maps.get("processed"), processed_label=args.label,
                  input_map=maps.get("input"), half1=maps.get("half1"), half2=maps.get("half2"),
                  model=model, reference_map=maps.get("reference"), mask=maps.get("mask"),
                  resolution=args.resolution, autob=not args.no_autob, relion=not args.no_relion)

    from .report import write_report  # matplotlib only when a report is written
    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    if ev.halfmap_fsc is not None:
        print(f"half-map FSC: 0.5 at {resolution_at(ev.halfmap_fsc, 0.5):.2f} A, "
              f"0.143 at {resolution_at(ev.halfmap_fsc, 0.143):.2f} A (unmasked)")
    if ev.resolution is not None:
        print(f"data resolution used: {ev.resolution:.2f} A ({ev.resolution_source})")
    for key, det in ev.details.items():
        if key == "RELION":
            print(f"RELION: B used for sharpening {det['B']:.1f} A^2, RELION resolution {det['resolution']:.2f} A, "
                  f"mask threshold {det['threshold']:.4g}")
        else:
            print(f"{key}: fitted B = {det['B']:.1f} A^2 (sharpened by {-det['B']:.1f} A^2), "
                  f"low-pass at {det['resolution']:.2f} A")
    if ev.scores:
        print(format_table(ev.scores))
    else:
        print("no --model or --reference: no FSC/CC against a reference (only the half-map FSC and baselines).")

    if not args.no_maps:
        files = {"auto-B": "autoB_sharpened.mrc", "RELION": "relion_postprocess_masked.mrc"}
        for key, name in files.items():
            if key in ev.maps:
                write_map(os.path.join(out, name), ev.maps[key], grid, overwrite=True, label=f"deepemhancer-eval {key}")
        if ev.reference is not None and "processed" in maps:
            lcc = local_cc(maps["processed"], ev.reference.cc_reference, grid.voxel_size, window_angstrom=10.0)
            write_map(os.path.join(out, "local_cc.mrc"), lcc, grid, overwrite=True,
                      label="deepemhancer-eval local CC (10 A window)")
    png, page = write_report(ev, out, title=args.title)
    scores = {"resolution": ev.resolution, "resolution_source": ev.resolution_source, "notes": ev.notes,
              "details": ev.details, "reference": ev.reference.kind if ev.reference else None,
              "mask": ev.reference.mask_kind if ev.reference else None,
              "maps": [s.row() for s in ev.scores]}
    # the curves themselves, for figures drawn elsewhere (the Scipion viewer)
    scores["curves"] = {f"{s.name} vs {ev.reference.kind}": _curve(s.fsc) for s in ev.scores}
    if ev.halfmap_fsc is not None:
        scores["halfmap_fsc0.143"] = resolution_at(ev.halfmap_fsc, 0.143)
        scores["halfmap_fsc0.5"] = resolution_at(ev.halfmap_fsc, 0.5)
        scores["curves"]["half map 1 vs 2"] = _curve(ev.halfmap_fsc)
    with open(os.path.join(out, "scores.json"), "w") as fh:
        json.dump(scores, fh, indent=1)
    print(f"report: {png}, {page}")
    return 0


def _curve(curve) -> dict:
    return {"frequency": [round(float(f), 5) for f in curve.frequency], "fsc": [round(float(c), 4) for c in curve.fsc]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InputError as exc:
        print(f"deepemhancer-eval: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - the command reports internal errors with exit code 1
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
