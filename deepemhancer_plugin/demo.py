# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Headless demo: a real Scipion project that imports the bundled example (two half maps of the HCN4 channel and
its fitted model), runs deepEMhancer on them through the managed environment with the self-check, processed half
maps, confidence map and evaluation against the model, and writes the output map, a figure and the scores.

    python -m deepemhancer_plugin.demo [--output demo-output] [--project deepemhancer_demo]

Needs SCIPION_HOME (with config/hosts.conf), SCIPION_DOMAIN=pwem and the installed binaries
(`scipion3 installb deepemhancer deepemhancerModels`); `make demo` sets all of that up.
The example (deepemhancer_plugin/example, rebuilt by make_example.py there): EMD-0093, the human HCN4 channel at
3.4 A, a 112^3 box at its native 1.34 A/voxel around the whole tetramer, unsharpened and with independent coloured
noise per half (half-map FSC 0.143 at 3.85 A), and PDB 6GYN (4 chains, 36 lipids) for the evaluation.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import time


EXAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example")
EXAMPLE_SAMPLING = 1.34


def writeAverage(half1, half2, path):
    """The half-map average as a float32 MRC with the halves' header (voxel size, origin): the "map" Scipion imports
    with its half maps attached."""
    import mrcfile
    import numpy as np
    with mrcfile.open(half1, permissive=True) as a, mrcfile.open(half2, permissive=True) as b:
        data = (np.asarray(a.data, np.float32) + np.asarray(b.data, np.float32)) / 2
        voxel, origin = a.voxel_size, a.header.origin
    with mrcfile.new(path, overwrite=True) as out:
        out.set_data(data)
        out.voxel_size = voxel
        out.header.origin = origin


def evaluationTable(scoresJson):
    """The evaluation's scores as a markdown table (resolutions in A; retention: see deepemhancer.evaluation)."""
    with open(scoresJson) as f:
        scores = json.load(f)
    rows = scores["maps"]
    keys = ["FSC0.5", "FSC0.143", "FSC0.5 env", "CC", "CC env", "retention", "outside", "atoms inside"]
    lines = ["Evaluation against PDB 6GYN (RELION's row where relion_postprocess is installed):", "",
             "| map | FSC0.5 (A) | FSC0.143 (A) | FSC0.5 env (A) | CC | CC env | retention | outside | atoms inside |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for k in keys:
            v = row.get(k)
            cells.append("-" if v is None else ("%.1f %%" % (100 * v) if k in keys[5:] else
                                                ("%.3f" % v if k.startswith("CC") else "%.2f" % v)))
        lines.append("| %s | %s |" % (row["map"], " | ".join(cells)))
    lines += ["", "half-map FSC 0.143: %.2f A" % scores["halfmap_fsc0.143"]] if "halfmap_fsc0.143" in scores else []
    lines += ["NOTE: %s" % note for note in scores.get("notes", [])]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="demo-output", help="folder for the results (default: %(default)s)")
    parser.add_argument("--project", default="deepemhancer_demo", help="Scipion project name (replaced)")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)

    import pwem
    pwem.Domain.getPlugins()
    from pwem.protocols import ProtImportPdb, ProtImportVolumes
    from pyworkflow.project import Manager

    from . import Plugin
    from .constants import INPUT_ATTACHED_HALVES, MODEL_CUSTOM, MODEL_TIGHT
    from .protocols import DeepEMhancerProtPostProcess
    from .tests import makeTinyModel, readMap, shippedModel
    from .viewers.viewer_postprocess import suggestedLevels

    manager = Manager()
    if manager.hasProject(args.project):
        manager.deleteProject(args.project)
    project = manager.createProject(args.project)
    os.chdir(project.path)
    print("Scipion project: %s" % project.path)

    def launch(prot, label):
        prot.setObjLabel(label)
        start = time.time()
        project.launchProtocol(prot, wait=True)
        if not prot.isFinished():
            sys.exit("%s failed; see %s" % (label, prot.getLogPaths()[0]))
        print("%-28s %6.1f s" % (label, time.time() - start))
        return prot

    half1, half2 = (os.path.join(EXAMPLE_DIR, "emd0093_half%d.mrc" % k) for k in (1, 2))
    average = os.path.join(project.path, "emd0093_average.mrc")
    writeAverage(half1, half2, average)
    modelFile = os.path.join(project.path, "6gyn.pdb")
    with gzip.open(os.path.join(EXAMPLE_DIR, "6gyn.pdb.gz"), "rb") as src, open(modelFile, "wb") as dst:
        shutil.copyfileobj(src, dst)
    imported = launch(project.newProtocol(ProtImportVolumes, filesPath=average, samplingRate=EXAMPLE_SAMPLING,
                                          setHalfMaps=True, half1map=half1, half2map=half2),
                      "import map + half maps")
    model = launch(project.newProtocol(ProtImportPdb, inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
                                       pdbFile=modelFile), "import model 6GYN")

    kwargs = dict(inputType=INPUT_ATTACHED_HALVES, inputVolume=imported.outputVolume, preserveHalves=True,
                  referenceAtomStruct=model.outputPdb)
    if shippedModel("tightTarget"):
        kwargs["modelType"] = MODEL_TIGHT
        modelNote = "shipped tightTarget model"
    else:
        print("WARNING: no trained tightTarget model is installed (%s); the demo uses an UNTRAINED test model, "
              "so the output only shows the plumbing." % Plugin.getModelsDir())
        kwargs.update(modelType=MODEL_CUSTOM, customModelFile=makeTinyModel(os.path.join(project.path, "models")))
        modelNote = "untrained test model"
    prot = project.newProtocol(DeepEMhancerProtPostProcess, **kwargs)
    errors = prot.validate()
    if errors:
        sys.exit("Validation failed:\n  " + "\n  ".join(errors))
    launch(prot, "deepEMhancer (%s)" % modelNote)

    volume = prot.outputVolume
    mapOut = os.path.join(output, "deepemhancer_output.mrc")
    shutil.copyfile(volume.getFileName(), mapOut)
    confidenceOut = os.path.join(output, "deepemhancer_confidence.mrc")
    shutil.copyfile(prot.getConfidenceMap().getFileName(), confidenceOut)
    from .viewers import DeepEMhancerViewer
    viewer = DeepEMhancerViewer(project=project, protocol=prot)
    png = viewer.writeSlicesPng(os.path.join(output, "input_output_confidence.png"))
    cxc = viewer.writeChimeraScript()
    shutil.copyfile(cxc, os.path.join(output, os.path.basename(cxc)))
    report = os.path.join(output, "evaluation_report.png")
    shutil.copyfile(prot.getEvaluationReport(), report)
    outputData = readMap(volume.getFileName())
    inputLevel, outputLevel = suggestedLevels((readMap(half1) + readMap(half2)) / 2, outputData)
    print("")
    print("Where to look:")
    print("  output map         %s  (%s voxels, %.2f A/px, on the input's grid)"
          % (mapOut, "x".join(map(str, outputData.shape)), volume.getSamplingRate()))
    print("  confidence map     %s  (0..1: P(local error < 0.1 of the peak))" % confidenceOut)
    print("  figure             %s  (input | output | confidence slices, same contour; FSC vs the model and "
          "of the half maps)" % png)
    print("  evaluation report  %s" % report)
    print("  ChimeraX script    %s  (input | output tiled, output coloured by confidence)"
          % os.path.join(output, os.path.basename(cxc)))
    print("  Scipion project    %s" % project.path)
    print("Suggested thresholds: input %.4g, output %.4g" % (inputLevel, outputLevel))
    print("Summary: " + re.sub(r"\[\[sci-open:\d+\]\[([^\]]*)\]\]", r"\1", " ".join(prot.summary())))
    print("")
    print(evaluationTable(prot.getEvaluationScores()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
