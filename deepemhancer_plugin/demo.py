# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Headless demo: a real Scipion project that imports the bundled example map with its two half maps, runs
deepEMhancer on them through the managed environment, and writes the output map plus a side-by-side PNG.

    python -m deepemhancer_plugin.demo [--output demo-output] [--project deepemhancer_demo]

Needs SCIPION_HOME (with config/hosts.conf), SCIPION_DOMAIN=pwem and the installed binaries
(`scipion3 installb deepemhancer deepemhancerModels`); `make demo` sets all of that up.
The example: EMD-3488 (human haemoglobin, 3.2 A) cropped and binned to 48^3 at 2.1 A, with two noisy half maps
(see deepemhancer_plugin/tests/data/make_test_data.py).
"""

import argparse
import os
import re
import shutil
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="demo-output", help="folder for the results (default: %(default)s)")
    parser.add_argument("--project", default="deepemhancer_demo", help="Scipion project name (replaced)")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)

    import pwem
    pwem.Domain.getPlugins()
    from pwem.protocols import ProtImportVolumes
    from pyworkflow.project import Manager

    from . import Plugin
    from .constants import INPUT_ATTACHED_HALVES, MODEL_CUSTOM, MODEL_TIGHT
    from .protocols import DeepEMhancerProtPostProcess
    from .tests import HALF1, HALF2, MAP, SAMPLING, makeTinyModel, readMap, shippedModel
    from .viewers.viewer_postprocess import renderSlices, suggestedLevels

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

    imported = launch(project.newProtocol(ProtImportVolumes, filesPath=MAP, samplingRate=SAMPLING, setHalfMaps=True,
                                          half1map=HALF1, half2map=HALF2), "import map + half maps")

    kwargs = dict(inputType=INPUT_ATTACHED_HALVES, inputVolume=imported.outputVolume)
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
    inputData = (readMap(HALF1) + readMap(HALF2)) / 2
    outputData = readMap(volume.getFileName())
    png = renderSlices(inputData, outputData, os.path.join(output, "input_vs_output.png"),
                       voxelSize=volume.getSamplingRate(), halves=(readMap(HALF1), readMap(HALF2)))
    from .viewers import DeepEMhancerViewer
    cxc = DeepEMhancerViewer(project=project, protocol=prot).writeChimeraScript()
    shutil.copyfile(cxc, os.path.join(output, os.path.basename(cxc)))
    inputLevel, outputLevel = suggestedLevels(inputData, outputData)
    print("Output map: %s  (%s voxels, %.2f A/px, origin (%.2f, %.2f, %.2f) A)"
          % ((mapOut, "x".join(map(str, outputData.shape)), volume.getSamplingRate())
             + tuple(volume.getOrigin(force=True).getShifts())))
    print("Side by side: %s" % png)
    print("ChimeraX script (input | output, tiled): %s" % cxc)
    print("Suggested thresholds: input %.4g, output %.4g" % (inputLevel, outputLevel))
    print("Summary: " + re.sub(r"\[\[sci-open:\d+\]\[([^\]]*)\]\]", r"\1", " ".join(prot.summary())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
