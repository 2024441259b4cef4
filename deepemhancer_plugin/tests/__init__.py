# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Shared helpers for the plugin tests: the shipped test maps, imports, small real models, reading results.

Test maps (tests/data, see make_test_data.py): EMD-3488 haemoglobin cropped and binned to 48^3 at 2.1 A, two noisy
half maps, their average and a binary mask.
"""

import os
import subprocess
import time

import mrcfile
import numpy as np
from pwem.protocols import ProtImportMask, ProtImportVolumes

from .. import Plugin
from ..constants import MODEL_KINDS, enginePackageDir, modelMetadataName
from ..protocols import DeepEMhancerProtPostProcess

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SAMPLING = 2.1
BOX = 48
# An origin (Scipion shifts = position in A of voxel 0) that differs from Scipion's default (the box centre), so
# tests see it travel to the output. ProtImportVolumes takes the map centre, i.e. the negated shifts.
ORIGIN = (-40.0, -45.5, -51.0)


def dataFile(name):
    return os.path.join(DATA_DIR, name)


MAP, HALF1, HALF2, MASK = (dataFile("emd3488_%s.mrc" % n) for n in ("map", "half1", "half2", "mask"))


def readMap(fn):
    with mrcfile.open(fn.split(":")[0], permissive=True) as mrc:
        return np.asarray(mrc.data, dtype=np.float32)


def runInEngineEnv(command, cwd=None):
    """Run a shell command inside the managed environment (as the protocol does); return its stdout."""
    full = "%s && %s" % (Plugin.getActivationCmd(), command)
    result = subprocess.run(full, shell=True, executable="/bin/sh", env=Plugin.getEnviron(), cwd=cwd,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError("Command failed in the DeepEMhancer env (%d): %s\n%s\n%s"
                           % (result.returncode, full, result.stdout, result.stderr))
    return result.stdout


def makeTinyModel(directory, kind="tightTarget", normalization="noise"):
    """A small untrained real model made with the engine's API in the managed env; returns its .json path."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_model.py")
    runInEngineEnv("python %s %s %s %s" % (script, os.path.abspath(directory), kind, normalization))
    return os.path.join(os.path.abspath(directory), modelMetadataName(kind))


def shippedModel(kind=MODEL_KINDS[0]):
    """The shipped (trained) model of this kind if the models are installed, else None."""
    for folder in (Plugin.getModelsDir(), os.path.join(enginePackageDir(), "models")):
        if os.path.exists(os.path.join(folder, modelMetadataName(kind))):
            return os.path.join(folder, modelMetadataName(kind))
    return None


class ImportMixin:
    """Imports of the shipped test maps into cls.proj (a BaseTest with setupTestProject), and post-processing runs
    shared between the test cases of a class (cls.runs: label -> finished protocol)."""

    def launchPostProcessOnce(self, label, **kwargs):
        """Validate and run DeepEMhancerProtPostProcess with these parameters once per label (each run costs
        seconds of CPU), printing its wall time; later calls with the label return the finished run."""
        if label in self.runs:
            return self.runs[label]
        prot = self.newProtocol(DeepEMhancerProtPostProcess, **kwargs)
        prot.setObjLabel(label)
        self.assertEqual(prot.validate(), [])
        start = time.time()
        self.launchProtocol(prot)
        print("%s: %.1f s" % (label, time.time() - start))
        self.runs[label] = prot
        return prot

    @classmethod
    def importVolume(cls, path=MAP, halves=None, origin=ORIGIN, label=None):
        kwargs = dict(filesPath=path, samplingRate=SAMPLING)
        if origin is not None:
            kwargs.update(setOrigCoord=True, x=-origin[0], y=-origin[1], z=-origin[2])
        if halves:
            kwargs.update(setHalfMaps=True, half1map=halves[0], half2map=halves[1])
        prot = cls.newProtocol(ProtImportVolumes, **kwargs)
        prot.setObjLabel(label or "import %s" % os.path.basename(path))
        cls.launchProtocol(prot)
        return prot.outputVolume

    @classmethod
    def importExampleVolumes(cls):
        """The shipped map and its two half maps as cls.volume, cls.half1, cls.half2 (separate volumes)."""
        cls.half1 = cls.importVolume(HALF1, label="half 1")
        cls.half2 = cls.importVolume(HALF2, label="half 2")
        cls.volume = cls.importVolume(MAP, label="map")

    @classmethod
    def importMask(cls, path=MASK):
        prot = cls.newProtocol(ProtImportMask, maskPath=path, samplingRate=SAMPLING)
        prot.setObjLabel("import mask")
        cls.launchProtocol(prot)
        return prot.outputMask
