# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Input vs output of a DeepEMhancer run: a ChimeraX session side by side and a central-slices figure."""

import os

import numpy as np
import pyworkflow.protocol.params as params
from pwem.viewers import EmProtocolViewer
from pwem.viewers.viewer_chimera import Chimera, ChimeraView
from pyworkflow.viewer import DESKTOP_TKINTER, View

from ..protocols import DeepEMhancerProtPostProcess
from ..protocols.protocol_postprocess import TRUST_TAB

CXC_NAME = "deepemhancer_compare.cxc"
AXIS_NAME = "deepemhancer_axis.bild"
SLICES_PNG = "deepemhancer_slices.png"
# Confidence 0..1 on the output surface: unreliable red, half-way white, reliable blue.
CONFIDENCE_PALETTE = "0,red:0.5,white:1,blue"
# Clear input density the output no longer shows (the engine's erased-density mask): over the input, in red.
ERASED_COLOR = "#e03030"
# Both maps are contoured to enclose the same volume: the molecule's as the output sees it, kept in a sane range.
MIN_FRACTION, MAX_FRACTION = 0.002, 0.3


class DeepEMhancerViewer(EmProtocolViewer):
    """Compare the input and the DeepEMhancer output: ChimeraX side by side, or central slices and FSC curves."""
    _label = "viewer deepEMhancer"
    _targets = [DeepEMhancerProtPostProcess]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayChimera", params.LabelParam,
                      label="Input and output in ChimeraX",
                      help="Opens both maps tiled side by side, contoured at levels enclosing the same volume.")
        form.addParam("displaySlices", params.LabelParam,
                      label="Central slices and FSC: input vs output",
                      help="Orthogonal central slices of the input (half-map average), of the output and of the "
                           "confidence map (with --preserveHalves), contoured to enclose the same volume, and FSC "
                           "curves (output vs input; half map 1 vs 2; input and output vs the evaluation model). "
                           "Also saved as extra/%s." % SLICES_PNG)

        form.addParam("displayEvaluation", params.LabelParam,
                      label="Evaluation report",
                      help="The report of deepemhancer-eval (FSC/CC against the evaluation model), when the run "
                           "was given an evaluation model.")

    def _getVisualizeDict(self):
        return {"displayChimera": self._showChimera, "displaySlices": self._showSlices,
                "displayEvaluation": self._showEvaluation}

    # ------------------------------------------------------------------ views
    def _showChimera(self, paramName=None):
        return [ChimeraView(self.writeChimeraScript())]

    def _showSlices(self, paramName=None):
        png = self.writeSlicesPng()
        return [SlicesView(png)]

    def _showEvaluation(self, paramName=None):
        report = self.protocol.getEvaluationReport()
        if not os.path.exists(report):
            self.showInfo("No evaluation report: give the protocol an evaluation model (tab '%s')." % TRUST_TAB)
            return []
        return [SlicesView(report, title="DeepEMhancer: evaluation report")]

    # ------------------------------------------------------------------ files
    def _loadMaps(self):
        """(input data, output data) as float32 arrays (z, y, x); the input is the half-map average if halves."""
        import mrcfile
        prot = self.protocol
        inputs = prot._getInputWorkFiles()[:2 if prot.usesHalfMaps() else 1]
        inputData = np.mean([_readMrc(mrcfile, f) for f in inputs], axis=0)
        outputData = _readMrc(mrcfile, prot.getOutputVolume().getFileName())
        return inputData, outputData

    def writeChimeraScript(self):
        """Write extra/deepemhancer_compare.cxc (and its axis .bild); return its absolute path."""
        prot = self.protocol
        inputData, outputData = self._loadMaps()
        inputLevel, outputLevel = suggestedLevels(inputData, outputData)
        output = prot.getOutputVolume()
        sampling = output.getSamplingRate()
        x, y, z = output.getOrigin(force=True).getShifts()
        axis = os.path.abspath(prot._getExtraPath(AXIS_NAME))
        Chimera.createCoordinateAxisFile(max(outputData.shape), bildFileName=axis, sampling=sampling)

        inputFiles = [os.path.abspath(f) for f in prot._getInputWorkFiles()[:2 if prot.usesHalfMaps() else 1]]
        lines = ["# DeepEMhancer: input (left) and output (right), contoured to enclose the same volume",
                 "# suggested thresholds: input %.6g, output %.6g" % (inputLevel, outputLevel),
                 "open %s" % axis,
                 "cofr 0,0,0"]
        model = 2
        if len(inputFiles) == 2:
            # The engine averages the halves; show that average by adding the two maps scaled by 1/2.
            lines += ["open %s" % inputFiles[0], "open %s" % inputFiles[1],
                      "volume add #2,3 scaleFactors 0.5,0.5 modelId #4",
                      "close #2,3"]
            model = 4
        else:
            lines.append("open %s" % inputFiles[0])
        outputModel = model + 1
        lines.append("open %s" % os.path.abspath(output.getFileName()))
        for m, level, color in ((model, inputLevel, "#b4b4b4"), (outputModel, outputLevel, "#5fa8d3")):
            lines += ["volume #%d style surface voxelSize %f" % (m, sampling),
                      "volume #%d origin %0.2f,%0.2f,%0.2f" % (m, x, y, z),
                      "volume #%d level %.6g color %s" % (m, level, color)]
        lines += ["rename #%d input" % model, "rename #%d deepEMhancer" % outputModel]
        confidence = prot.getConfidenceMap()
        if confidence is not None:
            # The confidence map (0..1) colours the output surface; hidden itself, it only supplies the values.
            confidenceModel = outputModel + 1
            lines += ["# output surface coloured by confidence (red unreliable, white 0.5, blue reliable)",
                      "open %s" % os.path.abspath(confidence.getFileName()),
                      "volume #%d voxelSize %f origin %0.2f,%0.2f,%0.2f" % (confidenceModel, sampling, x, y, z),
                      "rename #%d confidence" % confidenceModel,
                      "hide #%d models" % confidenceModel,
                      "color sample #%d map #%d palette %s" % (outputModel, confidenceModel, CONFIDENCE_PALETTE)]
        lines.append("tile #%d,%d" % (model, outputModel))
        erased = prot.getErasedDensityMask()
        # the engine reported the regions it put in the mask: no need to read the map to know it is not empty
        if erased is not None and (prot.getRunSummary() or {}).get("missing_regions"):
            erasedModel = outputModel + (2 if confidence is not None else 1)
            lines += ["# red, on the input: clear input density the output no longer shows (summary: where, how big)",
                      "open %s" % os.path.abspath(erased.getFileName()),
                      "volume #%d voxelSize %f origin %0.2f,%0.2f,%0.2f" % (erasedModel, sampling, x, y, z),
                      "volume #%d style surface level 0.5 color %s transparency 0.3" % (erasedModel, ERASED_COLOR),
                      "rename #%d erased" % erasedModel,
                      # wherever tiling put the input, the mask goes with it
                      "view position #%d sameAsModels #%d" % (erasedModel, model)]
        lines.append("view")
        fn = os.path.abspath(prot._getExtraPath(CXC_NAME))
        with open(fn, "w") as f:
            f.write("\n".join(lines) + "\n")
        return fn

    def writeSlicesPng(self, path=None):
        """Render the orthogonal central slices of input and output to a PNG (no display needed)."""
        inputData, outputData = self._loadMaps()
        prot = self.protocol
        halves = None
        if prot.usesHalfMaps():
            import mrcfile
            halves = [_readMrc(mrcfile, f) for f in prot._getInputWorkFiles()[:2]]
        confidence = prot.getConfidenceMap()
        confidenceData = None if confidence is None else _readMrc(mrcfile_module(), confidence.getFileName())
        path = path or os.path.abspath(prot._getExtraPath(SLICES_PNG))
        renderSlices(inputData, outputData, path, voxelSize=prot.getOutputVolume().getSamplingRate(), halves=halves,
                     confidence=confidenceData, modelCurves=evaluationCurves(prot))
        return path


def evaluationCurves(prot):
    """{label: (frequencies, FSC)} of each map against the evaluation model, from the evaluation's scores.json
    (empty without an evaluation)."""
    import json
    fn = prot.getEvaluationScores()
    if not os.path.exists(fn):
        return {}
    with open(fn) as f:
        curves = json.load(f).get("curves", {})
    return {label: (np.asarray(c["frequency"]), np.asarray(c["fsc"])) for label, c in curves.items()
            if "half map" not in label and not label.startswith("auto-B")}


class SlicesView(View):
    """Shows the slices PNG in a Tk window (only used with a display)."""

    def __init__(self, png, title="DeepEMhancer: input vs output"):
        self.png = png
        self.title = title

    def show(self):
        import matplotlib.pyplot as plt
        image = plt.imread(self.png)
        fig = plt.figure(figsize=(image.shape[1] / 100.0, image.shape[0] / 100.0))
        fig.canvas.manager.set_window_title(self.title)
        ax = fig.add_axes([0, 0, 1, 1])
        ax.imshow(image)
        ax.axis("off")
        plt.show()


def mrcfile_module():
    import mrcfile
    return mrcfile


def _readMrc(mrcfile, fn):
    with mrcfile.open(fn.split(":")[0], permissive=True) as mrc:
        return np.asarray(mrc.data, dtype=np.float32)


def suggestedLevels(inputData, outputData):
    """Contour levels that enclose the same volume in both maps.

    The volume is what the output marks as molecule (voxels above 5% of its 99.9th percentile), since the
    output's solvent is near zero; it is kept within [0.2%, 30%] of the box.
    """
    top = np.percentile(outputData, 99.9)
    fraction = float(np.mean(outputData > 0.05 * top)) if top > 0 else MAX_FRACTION
    fraction = min(max(fraction, MIN_FRACTION), MAX_FRACTION)
    q = 100.0 * (1.0 - fraction)
    return float(np.percentile(inputData, q)), float(np.percentile(outputData, q))


def fsc(a, b, voxelSize):
    """Fourier shell correlation of two maps on one grid; returns (frequencies in 1/A, FSC), up to Nyquist."""
    fa, fb = np.fft.rfftn(a), np.fft.rfftn(b)
    nz, ny, nx = a.shape
    kz = np.fft.fftfreq(nz)[:, None, None]
    ky = np.fft.fftfreq(ny)[None, :, None]
    kx = np.fft.rfftfreq(nx)[None, None, :]
    n = max(a.shape)
    shell = np.rint(np.sqrt(kz ** 2 + ky ** 2 + kx ** 2) * n).astype(int).ravel()
    nShells = n // 2 + 1
    keep = shell < nShells
    shell = shell[keep]

    def total(values):
        return np.bincount(shell, weights=values.ravel()[keep], minlength=nShells)

    cross = total((fa * np.conj(fb)).real)
    power = total(np.abs(fa) ** 2) * total(np.abs(fb) ** 2)
    curve = np.divide(cross, np.sqrt(power), out=np.zeros(nShells), where=power > 0)
    return np.arange(nShells) / (n * voxelSize), curve


def renderSlices(inputData, outputData, path, voxelSize=1.0, halves=None, confidence=None, modelCurves=None):
    """Input and output: central XY, XZ, YZ slices (rows input, output; each map on its own grey scale, contoured
    at levels enclosing the same volume), the confidence map's slices (0..1, when given, with the output's contour)
    and FSC curves: output vs input, half map 1 vs 2 (when given) and, from an evaluation, each map against the
    atomic model (``modelCurves``: {label: (frequencies 1/A, FSC)})."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nRows = 3 if confidence is None else 4
    fig = Figure(figsize=(9, 9.25 + (0 if confidence is None else 3)), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(nRows, 3, height_ratios=(1,) * (nRows - 1) + (0.9,))
    inputLevel, outputLevel = suggestedLevels(inputData, outputData)
    rows = (("input", inputData, inputLevel), ("deepEMhancer", outputData, outputLevel))
    for r, (name, data, level) in enumerate(rows):
        nz, ny, nx = data.shape
        slices = (("XY (z=%d)" % (nz // 2), data[nz // 2]),
                  ("XZ (y=%d)" % (ny // 2), data[:, ny // 2, :]),
                  ("YZ (x=%d)" % (nx // 2), data[:, :, nx // 2]))
        lo, hi = np.percentile(data, [0.5, 99.9])
        for c, (title, image) in enumerate(slices):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image, cmap="gray", origin="lower", vmin=lo, vmax=hi if hi > lo else lo + 1)
            if np.any(image > level):
                ax.contour(image, levels=[level], colors="#e8a33d", linewidths=0.7)
            ax.set_title("%s %s" % (name, title), fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    if confidence is not None:
        nz, ny, nx = confidence.shape
        slices = (("XY", confidence[nz // 2]), ("XZ", confidence[:, ny // 2, :]), ("YZ", confidence[:, :, nx // 2]))
        for c, (title, image) in enumerate(slices):
            ax = fig.add_subplot(grid[2, c])
            shown = ax.imshow(image, cmap="RdBu", origin="lower", vmin=0.0, vmax=1.0)
            outputSlice = (outputData[nz // 2], outputData[:, ny // 2, :], outputData[:, :, nx // 2])[c]
            if np.any(outputSlice > outputLevel):
                ax.contour(outputSlice, levels=[outputLevel], colors="#e8a33d", linewidths=0.7)
            ax.set_title("confidence %s" % title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        # An inset colour bar keeps the three panels the same size.
        fig.colorbar(shown, cax=ax.inset_axes([1.03, 0.0, 0.04, 1.0])).ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[nRows - 1, :])
    curves = [("output vs input", outputData, inputData)]
    if halves is not None:
        curves.append(("half map 1 vs 2 (input)", halves[0], halves[1]))
    for label, a, b in curves:
        freq, curve = fsc(a, b, voxelSize)
        ax.plot(freq[1:], curve[1:], label=label)
    for label, (freq, curve) in (modelCurves or {}).items():
        ax.plot(freq[1:], curve[1:], linestyle="--", label=label)
    ax.axhline(0.143, color="0.6", linewidth=0.7, linestyle="--")
    ax.set_xlabel("spatial frequency (1/A)  [Nyquist %.2f A]" % (2 * voxelSize), fontsize=9)
    ax.set_ylabel("FSC", fontsize=9)
    ax.set_ylim(-0.1, 1.02)
    ax.legend(fontsize=8, loc="upper right")
    ax.tick_params(labelsize=8)
    fig.suptitle("Central slices; orange contour = suggested threshold (same enclosed volume)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=1.5)
    tmp = path + ".part.png"
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
