"""The comparison: input, baselines and processed map scored against one reference on one grid.

Conventions (the same as the reference numbers in the project's data README):

- reference: the atomic model's map on the maps' grid (:func:`.modelmap.model_map`, d_min = 2 x voxel), or a
  reference map given on that grid;
- FSC unmasked over the whole box; FSC "in envelope" inside a soft mask: the user's mask if one is given, otherwise
  the model envelope (reference above 5 % of its maximum, dilated 2 A, 4 A cosine edge);
- resolutions where the FSC first falls below 0.5 and 0.143;
- CC: Pearson correlation with the reference blurred by a Gaussian of sigma = 0.225 x d / 2 (d: the resolution of
  the data), over the whole box and over the voxels where that blurred reference is above 5 % of its maximum
  (or inside the user's mask);
- retention, outside and atoms inside (:mod:`.retention`): how much of the input's significant 6 A density each
  map still shows, how much of its density lies away from the input's, and the fraction of model atoms inside its
  contour enclosing the model's volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io import MapGrid
from . import fsc as F
from . import retention as R
from .modelmap import model_map
from .relion import RelionResult, relion_postprocess, relion_programs
from .sharpen import auto_sharpen

__all__ = ["Reference", "MapScore", "Evaluation", "make_reference", "score_map", "evaluate", "format_table"]


@dataclass
class Reference:
    """What maps are compared with: the reference map, its blurred version for CC and the two masks."""

    data: np.ndarray
    kind: str                  # "model" or "map"
    fsc_mask: np.ndarray       # soft mask for the "in envelope" FSC
    cc_reference: np.ndarray   # reference blurred to the data's resolution
    cc_mask: np.ndarray        # binary/soft mask for the "in envelope" CC
    mask_kind: str             # "model envelope", "reference envelope" or "user mask"


@dataclass
class MapScore:
    name: str
    fsc: F.FSCCurve
    fsc_masked: F.FSCCurve
    fsc05: float
    fsc0143: float
    fsc05_masked: float
    fsc0143_masked: float
    cc: float
    cc_masked: float
    retention: float | None = None       # of the input's significant 6 A density (:mod:`.retention`)
    outside: float | None = None         # of the map's 6 A density above its level there, > 3 A from the input's
    atoms_inside: float | None = None    # fraction of model atoms inside the map's model-volume contour

    def row(self) -> dict:
        return {"map": self.name, "FSC0.5": self.fsc05, "FSC0.143": self.fsc0143, "FSC0.5 env": self.fsc05_masked,
                "FSC0.143 env": self.fsc0143_masked, "CC": self.cc, "CC env": self.cc_masked,
                "retention": self.retention, "outside": self.outside, "atoms inside": self.atoms_inside}


@dataclass
class Evaluation:
    grid: MapGrid
    maps: dict[str, np.ndarray]
    scores: list[MapScore] = field(default_factory=list)
    reference: Reference | None = None
    resolution: float | None = None          # used for auto-B and the CC blur
    resolution_source: str = ""
    halfmap_fsc: F.FSCCurve | None = None
    halfmap_fsc_masked: F.FSCCurve | None = None
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)


def make_reference(grid: MapGrid, resolution: float, model=None, reference_map: np.ndarray | None = None,
                   mask: np.ndarray | None = None) -> Reference:
    """Build the reference on ``grid`` from an atomic model (path or gemmi.Structure) or a map on that grid."""
    if (model is None) == (reference_map is None):
        raise ValueError("give exactly one of an atomic model or a reference map")
    voxel = grid.voxel_size
    if model is not None:
        data, kind = model_map(model, grid), "model"
    else:
        data, kind = np.asarray(reference_map, dtype=np.float32), "map"
        if data.shape != tuple(grid.shape):
            raise ValueError(f"reference map shape {data.shape} differs from the map grid {tuple(grid.shape)}")
    blurred = F.gaussian_blur(data, 0.225 * resolution / 2.0, voxel)
    if mask is not None:
        fsc_mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
        cc_mask, mask_kind = fsc_mask, "user mask"
    else:
        fsc_mask = F.model_envelope_mask(data, voxel)
        cc_mask = (blurred > 0.05 * blurred.max()).astype(np.float32)
        mask_kind = "model envelope" if kind == "model" else "reference envelope"
    return Reference(data=data, kind=kind, fsc_mask=fsc_mask, cc_reference=blurred.astype(np.float32),
                     cc_mask=cc_mask, mask_kind=mask_kind)


def score_map(name: str, data: np.ndarray, reference: Reference, voxel_size) -> MapScore:
    """FSC (unmasked, in envelope) and CC (whole box, in envelope) of one map against the reference."""
    curve = F.fsc(data, reference.data, voxel_size)
    curve_m = F.fsc(data, reference.data, voxel_size, mask=reference.fsc_mask)
    return MapScore(name=name, fsc=curve, fsc_masked=curve_m,
                    fsc05=F.resolution_at(curve, 0.5), fsc0143=F.resolution_at(curve, 0.143),
                    fsc05_masked=F.resolution_at(curve_m, 0.5), fsc0143_masked=F.resolution_at(curve_m, 0.143),
                    cc=F.pearson_cc(data, reference.cc_reference),
                    cc_masked=F.pearson_cc(data, reference.cc_reference, reference.cc_mask))


def evaluate(grid: MapGrid, *, processed: np.ndarray | None = None, processed_label: str = "processed",
             input_map: np.ndarray | None = None, half1: np.ndarray | None = None, half2: np.ndarray | None = None,
             model=None, reference_map: np.ndarray | None = None, mask: np.ndarray | None = None,
             resolution: float | None = None, autob: bool = True, relion: bool = True,
             relion_result: RelionResult | None = None, extra_maps: dict[str, np.ndarray] | None = None,
             log=print) -> Evaluation:
    """Compute every map and score of a report.

    Args:
        grid: the common grid of all maps.
        processed: the processed map (e.g. DeepEMhancer output), labelled ``processed_label``.
        input_map: the unprocessed map; default the average of the half maps.
        half1, half2: half maps (give the half-map FSC, the resolution and the RELION baseline).
        model / reference_map: the reference (an atomic model path/Structure, or a map on ``grid``).
        mask: optional user mask on ``grid`` (soft, [0, 1]).
        resolution: resolution of the data in Angstrom; default the half-map FSC 0.143 resolution.
        autob, relion: compute these baselines when possible.
        relion_result: RELION's run on these half maps when the caller already has it (e.g. for its mask); the
            RELION column uses it instead of running RELION again.
        extra_maps: other maps to score beside them (e.g. a LocScale map), by name.
        log: where notices go (print by default).
    """
    ev = Evaluation(grid=grid, maps={})
    voxel = grid.voxel_size
    if (half1 is None) != (half2 is None):
        raise ValueError("give both half maps or neither")
    if half1 is not None:
        if half1.shape != tuple(grid.shape) or half2.shape != tuple(grid.shape):
            raise ValueError("half maps must be on the grid of the other maps")
        ev.halfmap_fsc = F.halfmap_fsc(half1, half2, voxel)
        if mask is not None:
            ev.halfmap_fsc_masked = F.halfmap_fsc(half1, half2, voxel, mask=mask)
        if input_map is None:
            input_map = (np.asarray(half1, dtype=np.float32) + np.asarray(half2, dtype=np.float32)) / 2.0
    if resolution is not None:
        ev.resolution, ev.resolution_source = float(resolution), "given"
    elif ev.halfmap_fsc is not None:
        curve = ev.halfmap_fsc_masked if ev.halfmap_fsc_masked is not None else ev.halfmap_fsc
        ev.resolution, ev.resolution_source = F.resolution_at(curve, 0.143), "half-map FSC 0.143"
    if input_map is not None:
        ev.maps["input"] = np.asarray(input_map, dtype=np.float32)

    if autob:
        if input_map is None:
            ev.notes.append("auto-B column unavailable: no input map or half maps given.")
        elif ev.resolution is None:
            ev.notes.append("auto-B column unavailable: no resolution (give half maps or --resolution).")
        else:
            try:
                res = auto_sharpen(input_map, voxel, ev.resolution)
                ev.maps["auto-B"] = res.data
                ev.details["auto-B"] = {"B": res.fit.bfactor, "resolution": res.resolution}
            except ValueError as exc:
                ev.notes.append(f"auto-B column unavailable: {exc}")
    if relion:
        if half1 is None:
            ev.notes.append("RELION column unavailable: relion_postprocess needs two half maps.")
        elif relion_result is None and relion_programs() is None:
            ev.notes.append("RELION column unavailable: relion_mask_create / relion_postprocess not found on PATH "
                            "(install RELION 3.1, e.g. `apt-get install relion`).")
        elif not grid.is_isotropic:
            ev.notes.append("RELION column unavailable: RELION needs isotropic voxels.")
        else:
            try:
                rr = relion_result if relion_result is not None else relion_postprocess(half1, half2, grid)
                ev.maps["RELION"] = rr.masked
                ev.details["RELION"] = {"B": rr.bfactor, "resolution": rr.resolution, "threshold": rr.threshold,
                                        "commands": list(rr.commands)}
            except RuntimeError as exc:
                ev.notes.append(f"RELION column unavailable: {str(exc).splitlines()[0]}")
    for name, data in (extra_maps or {}).items():
        ev.maps[name] = np.asarray(data, dtype=np.float32)
    if processed is not None:
        ev.maps[processed_label] = np.asarray(processed, dtype=np.float32)
    for note in ev.notes:
        log(f"NOTE: {note}")

    if model is not None or reference_map is not None:
        if ev.resolution is None:
            # no data resolution known: blur the CC reference to 2 x Nyquist, the finest the grid can tell
            ev.resolution, ev.resolution_source = 2.0 * 2.0 * max(voxel), "default (4 x voxel)"
        ev.reference = make_reference(grid, ev.resolution, model=model, reference_map=reference_map, mask=mask)
        ev.scores = [score_map(name, data, ev.reference, voxel) for name, data in ev.maps.items()]
        atoms = R.atom_voxel_indices(model, grid) if model is not None else None
        kept = R.retentions(ev.maps["input"], ev.maps, voxel) if "input" in ev.maps else {}
        for score in ev.scores:
            if score.name in kept:
                score.retention, score.outside = kept[score.name].retention, kept[score.name].outside
            if atoms is not None:
                score.atoms_inside = R.atoms_inside(ev.maps[score.name], atoms, voxel)
    return ev


def format_table(scores: list[MapScore], markdown: bool = True, title: str | None = None) -> str:
    """The numbers as a markdown table (resolutions in Angstrom, CC unitless)."""
    head = ["map", "FSC0.5 (A)", "FSC0.143 (A)", "FSC0.5 env (A)", "FSC0.143 env (A)", "CC", "CC env",
            "retention", "outside", "atoms inside"]

    def percent(value):
        return "-" if value is None or value != value else f"{100 * value:.1f} %"
    rows = [[s.name, f"{s.fsc05:.2f}", f"{s.fsc0143:.2f}", f"{s.fsc05_masked:.2f}", f"{s.fsc0143_masked:.2f}",
             f"{s.cc:.3f}", f"{s.cc_masked:.3f}", percent(s.retention), percent(s.outside), percent(s.atoms_inside)]
            for s in scores]
    lines = [f"**{title}**", ""] if title else []
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
