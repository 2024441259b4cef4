"""The report: one PNG (FSC curves, orthogonal central slices, table of numbers) and a small HTML page.

Slices are shown at matched display levels: each map is divided by its own contour level, the level that encloses
the same volume in every map (the volume of the reference envelope, or 5 % of the box without a reference), and
drawn on the same grey scale with that contour in yellow. Maps sharpened or scaled differently thus look comparable.
"""

from __future__ import annotations

import html
import os

import matplotlib

matplotlib.use("Agg")  # headless: reports are written by batch jobs and Scipion protocols
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .compare import Evaluation, format_table  # noqa: E402

__all__ = ["contour_level", "write_report"]


def contour_level(data: np.ndarray, volume_fraction: float) -> float:
    """The density level above which ``volume_fraction`` of the voxels lie."""
    return float(np.quantile(np.asarray(data, dtype=np.float32), 1.0 - volume_fraction))


def _volume_fraction(ev: Evaluation) -> float:
    if ev.reference is not None:
        frac = float(np.mean(ev.reference.cc_mask > 0.5))
        if 0.0 < frac < 1.0:
            return frac
    return 0.05


def _fsc_axis(ax, ev: Evaluation) -> None:
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, s in enumerate(ev.scores):
        c = colours[i % len(colours)]
        ax.plot(s.fsc.frequency[1:], s.fsc.fsc[1:], color=c, lw=1.5, label=f"{s.name} vs {ev.reference.kind}")
        ax.plot(s.fsc_masked.frequency[1:], s.fsc_masked.fsc[1:], color=c, lw=1.0, ls="--",
                label=f"{s.name} ({ev.reference.mask_kind})")
    if ev.halfmap_fsc is not None:
        h = ev.halfmap_fsc
        ax.plot(h.frequency[1:], h.fsc[1:], color="k", lw=1.5, label="half maps")
    if ev.halfmap_fsc_masked is not None:
        h = ev.halfmap_fsc_masked
        ax.plot(h.frequency[1:], h.fsc[1:], color="k", lw=1.0, ls="--", label="half maps (mask)")
    for t in (0.5, 0.143):
        ax.axhline(t, color="grey", lw=0.7, ls=":")
    ax.set_ylim(-0.1, 1.02)
    ax.set_xlabel("spatial frequency (1/A)")
    ax.set_ylabel("FSC")
    # resolution labels on top at the same positions as the frequency ticks
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1] and t > 0]
    top.set_xticks(ticks)
    top.set_xticklabels([f"{1.0 / t:.1f}" for t in ticks], fontsize=8)
    top.set_xlabel("resolution (A)", fontsize=8)
    ax.legend(fontsize=6, loc="upper right", ncol=1)
    ax.set_title("Fourier shell correlation", fontsize=9, loc="left")


def _table_axis(ax, ev: Evaluation) -> None:
    ax.axis("off")
    if not ev.scores:
        ax.text(0, 0.5, "no reference (model or map): no FSC/CC table", fontsize=9)
        return
    head = ["map", "FSC0.5", "FSC0.143", "FSC0.5\nenv", "FSC0.143\nenv", "CC", "CC env"]
    cells = [[s.name, f"{s.fsc05:.2f}", f"{s.fsc0143:.2f}", f"{s.fsc05_masked:.2f}", f"{s.fsc0143_masked:.2f}",
              f"{s.cc:.3f}", f"{s.cc_masked:.3f}"] for s in ev.scores]
    table = ax.table(cellText=cells, colLabels=head, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.6)
    extra = []
    if ev.resolution is not None:
        extra.append(f"data resolution {ev.resolution:.2f} A ({ev.resolution_source})")
    if "auto-B" in ev.details:
        extra.append(f"auto-B: fitted B = {ev.details['auto-B']['B']:.0f} A^2 (applied its negative)")
    if "RELION" in ev.details:
        extra.append(f"RELION: B used {ev.details['RELION']['B']:.0f} A^2, "
                     f"resolution {ev.details['RELION']['resolution']:.2f} A")
    ax.set_title("\n".join([f"resolutions (A) vs the {ev.reference.kind}; env = {ev.reference.mask_kind}"] + extra),
                 fontsize=8)


def _slices(data: np.ndarray, centre: tuple[int, int, int]):
    k, j, i = centre
    return data[k, :, :], data[:, j, :], data[:, :, i]   # xy plane, xz plane, yz plane


def write_report(ev: Evaluation, out_dir: str, title: str = "DeepEMhancer evaluation",
                 basename: str = "report") -> tuple[str, str]:
    """Write ``<basename>.png`` and ``<basename>.html`` into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    names = list(ev.maps)
    n_rows = len(names)
    fig = plt.figure(figsize=(11, 4.2 + 2.6 * max(n_rows, 1)), dpi=90)
    gs = fig.add_gridspec(1 + max(n_rows, 1), 2, height_ratios=[1.6] + [1.0] * max(n_rows, 1), hspace=0.3)
    ax_fsc = fig.add_subplot(gs[0, 0])
    ax_tab = fig.add_subplot(gs[0, 1])
    if ev.scores or ev.halfmap_fsc is not None:
        _fsc_axis(ax_fsc, ev)
    else:
        ax_fsc.axis("off")
    _table_axis(ax_tab, ev)

    frac = _volume_fraction(ev)
    shape = tuple(ev.grid.shape)
    if ev.reference is not None and ev.reference.cc_mask.sum() > 0:
        # centre the slices on the reference's envelope so they cut through the molecule
        idx = np.argwhere(ev.reference.cc_mask > 0.5)
        centre = tuple(int(round(v)) for v in idx.mean(axis=0))
    else:
        centre = tuple(n // 2 for n in shape)
    plane_names = ("xy (z = %d)" % centre[0], "xz (y = %d)" % centre[1], "yz (x = %d)" % centre[2])
    for r, name in enumerate(names):
        data = ev.maps[name]
        level = contour_level(data, frac)
        scaled = data / level if level > 0 else data / max(float(np.abs(data).max()), 1e-30)
        sub = gs[1 + r, :].subgridspec(1, 3, wspace=0.05)
        for c, plane in enumerate(_slices(scaled, centre)):
            ax = fig.add_subplot(sub[0, c])
            ax.imshow(plane, cmap="gray", vmin=-1.0, vmax=2.0, origin="lower", interpolation="nearest")
            if plane.max() > 1.0 > plane.min():
                ax.contour(plane, levels=[1.0], colors="yellow", linewidths=0.4)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 0:
                ax.set_title(plane_names[c], fontsize=8)
    fig.suptitle(f"{title}  (contour at {100 * frac:.1f} % of the box in every map)", fontsize=10)
    png = os.path.join(out_dir, f"{basename}.png")
    tmp = png + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png)

    table_md = format_table(ev.scores) if ev.scores else ""
    rows = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td>{s.fsc05:.2f}</td><td>{s.fsc0143:.2f}</td>"
        f"<td>{s.fsc05_masked:.2f}</td><td>{s.fsc0143_masked:.2f}</td><td>{s.cc:.3f}</td>"
        f"<td>{s.cc_masked:.3f}</td></tr>" for s in ev.scores)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ev.notes)
    info = []
    if ev.resolution is not None:
        info.append(f"Data resolution {ev.resolution:.2f} &Aring; ({html.escape(ev.resolution_source)}).")
    if ev.halfmap_fsc is not None:
        from .fsc import resolution_at
        info.append(f"Half-map FSC 0.143: {resolution_at(ev.halfmap_fsc, 0.143):.2f} &Aring; (unmasked).")
    for key, d in ev.details.items():
        info.append(html.escape(f"{key}: " + ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}"
                                                      for k, v in d.items())))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:3px 8px;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Resolutions (&Aring;) where the FSC against the {html.escape(ev.reference.kind if ev.reference else 'reference')}
first falls below 0.5 and 0.143, over the whole box and inside the
{html.escape(ev.reference.mask_kind if ev.reference else 'envelope')}; CC: real-space Pearson correlation.</p>
<table><tr><th>map</th><th>FSC0.5</th><th>FSC0.143</th><th>FSC0.5 env</th><th>FSC0.143 env</th><th>CC</th>
<th>CC env</th></tr>{rows}</table>
<p>{'<br>'.join(info)}</p>
<ul>{notes}</ul>
<img src="{html.escape(os.path.basename(png))}" alt="FSC curves, slices and table" style="max-width:100%">
<!-- markdown table
{table_md}
-->
</body></html>
"""
    page_path = os.path.join(out_dir, f"{basename}.html")
    with open(page_path + ".tmp", "w") as fh:
        fh.write(page)
    os.replace(page_path + ".tmp", page_path)
    return png, page_path
