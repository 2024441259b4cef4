# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Beyond the original, in a real Scipion project with the managed environment: half-map-preserving processing
(processed halves attached to the output + confidence map), local resolution, protect mask; validation; viewer.

    scipion3 tests deepemhancer_plugin.tests.test_beyond
"""

import os
import re

import mrcfile
import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from ..constants import INPUT_SEPARATE_HALVES, INPUT_VOLUME, MODEL_CUSTOM
from ..protocols import DeepEMhancerProtPostProcess, outputs
from ..viewers import DeepEMhancerViewer
from ..viewers.viewer_postprocess import CONFIDENCE_PALETTE, ERASED_COLOR
from . import BOX, HALF1, HALF2, ORIGIN, SAMPLING, ImportMixin, dataFile, makeTinyModel, readMap

# PDB 5me2 (ATOM/HETATM records), fitted in EMD-3488: its haems are the "ligands" --protectModel keeps.
ATOM_MODEL = dataFile("emd3488_5me2.pdb")

# Protect sphere (voxel indices z, y, x and radius in voxels): off-centre, inside the box.
CENTRE, RADIUS = (20, 26, 22), 6


def sphereDistance(shape=(BOX, BOX, BOX), centre=CENTRE):
    z, y, x = np.indices(shape)
    return np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)


def writeMask(path, data):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data.astype(np.float32))
        mrc.voxel_size = SAMPLING


class TestDeepEMhancerBeyond(BaseTest, ImportMixin):
    """--preserveHalves, --localResolution and --protectMask through the protocol (EMD-3488 48^3 halves)."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.importExampleVolumes()
        protect = os.path.abspath(os.path.join(cls.proj.path, "protect_sphere.mrc"))
        writeMask(protect, sphereDistance() <= RADIUS)
        cls.protectMask = cls.importMask(protect)
        cls.model = makeTinyModel(os.path.join(cls.proj.path, "test_models"))
        cls.runs = {}

    def runBeyond(self, label, **kwargs):
        """Run the protocol on the separate halves once per label."""
        kwargs.update(inputType=INPUT_SEPARATE_HALVES, inputHalf1=self.half1, inputHalf2=self.half2,
                      modelType=MODEL_CUSTOM, customModelFile=self.model)
        return self.launchPostProcessOnce(label, **kwargs)

    def beyond(self):
        return self.runBeyond("halves: preserve + locres + protect", preserveHalves=True, localResolution=True,
                        protectMask=self.protectMask)

    def checkGrid(self, volume):
        """On the input's grid: file exists, box, sampling rate and origin of the input; returns the data."""
        self.assertIsNotNone(volume)
        self.assertTrue(os.path.exists(volume.getFileName()), volume.getFileName())
        self.assertEqual(volume.getDim(), (BOX, BOX, BOX))
        self.assertAlmostEqual(volume.getSamplingRate(), SAMPLING, places=4)
        self.assertEqual(volume.getOrigin(force=True).getShifts(), ORIGIN)
        data = readMap(volume.getFileName())
        self.assertEqual(data.shape, (BOX, BOX, BOX))
        self.assertTrue(np.all(np.isfinite(data)))
        return data

    # ------------------------------------------------------------------ outputs
    def test_engine_flags(self):
        args = self.beyond()._getEngineArgs()
        for flag in ("--preserveHalves", "--localResolution", "--erasedMap",
                     "--protectMask %s" % os.path.abspath(self.beyond()._getExtraPath("protect_mask.mrc"))):
            self.assertIn(flag, args)
        self.assertNotIn("--keepUnsupported", args)   # output density the halves show as noise is damped
        keeping = self.newProtocol(DeepEMhancerProtPostProcess, inputType=INPUT_SEPARATE_HALVES,
                                   inputHalf1=self.half1, inputHalf2=self.half2, modelType=MODEL_CUSTOM,
                                   customModelFile=self.model, dampUnsupported=False)
        self.assertIn("--keepUnsupported", keeping._getEngineArgs())

    def test_processed_halves_attached(self):
        prot = self.beyond()
        volume = getattr(prot, outputs.outputVolume.name)
        output = self.checkGrid(volume)
        self.assertTrue(volume.hasHalfMaps())
        halves = volume.getHalfMaps(asList=True)
        self.assertEqual(len(halves), 2)
        for fn in halves:
            self.assertTrue(os.path.exists(fn), fn)
        h1, h2 = (readMap(fn) for fn in halves)
        self.assertEqual(h1.shape, readMap(HALF1).shape)
        self.assertEqual(h2.shape, readMap(HALF2).shape)
        self.assertFalse(np.allclose(h1, h2), "the halves were not processed independently")
        # The output is the average of the processed halves.
        np.testing.assert_allclose(output, 0.5 * (h1 + h2), rtol=1e-5, atol=1e-6 * float(np.abs(output).max()))
        # Registered in the project with its halves (what FSC / local-resolution protocols read).
        stored = self.proj.mapper.selectById(volume.getObjId())
        self.assertEqual(stored.getHalfMaps(asList=True), halves)

    def test_confidence_map(self):
        prot = self.beyond()
        confidence = prot.getConfidenceMap()
        self.assertIs(confidence, getattr(prot, outputs.confidenceMap.name))
        data = self.checkGrid(confidence)
        self.assertGreaterEqual(float(data.min()), 0.0)
        self.assertLessEqual(float(data.max()), 1.0)
        self.assertGreater(float(data.std()), 0.0, "constant confidence")

    def test_local_resolution_map(self):
        prot = self.beyond()
        data = self.checkGrid(prot.getLocalResolutionMap())
        self.assertGreater(float(data.min()), 0.0)
        # Never finer than Nyquist.
        self.assertGreaterEqual(float(data.min()), 2 * SAMPLING - 1e-3)

    def test_protect_mask_keeps_input_inside(self):
        """Inside the protect sphere the processed halves follow the input halves; far outside it the result is
        the same as without the mask."""
        protected = self.beyond()
        plain = self.runBeyond("halves: preserve", preserveHalves=True, erasedMap=False)
        self.assertIsNone(plain.getLocalResolutionMap())
        self.assertIsNone(plain.getErasedDensityMask())
        self.assertNotIn("--erasedMap", plain._getEngineArgs())
        distance = sphereDistance()
        inside, far = distance <= RADIUS - 1, distance > RADIUS + 4
        p1 = readMap(getattr(protected, outputs.outputVolume.name).getHalfMaps(asList=True)[0])
        u1 = readMap(getattr(plain, outputs.outputVolume.name).getHalfMaps(asList=True)[0])
        np.testing.assert_allclose(p1[far], u1[far], rtol=1e-4, atol=1e-4 * float(np.abs(u1).max()))
        half1 = readMap(HALF1)

        def cc(a, b):
            return float(np.corrcoef(a[inside], b[inside])[0, 1])
        print("CC with input half 1 inside the protect sphere: protected %.3f, plain %.3f"
              % (cc(p1, half1), cc(u1, half1)))
        self.assertGreater(cc(p1, half1), 0.5)
        self.assertGreater(cc(p1, half1), cc(u1, half1))

    def test_erased_density_mask(self):
        """Registered as a VolumeMask on the input's grid (so it can be the protect mask of a second run), 0..1, and
        the summary says how much of the input's clear density the output shows."""
        prot = self.beyond()
        mask = prot.getErasedDensityMask()
        self.assertIsInstance(mask, outputs.erasedDensityMask.value)
        data = self.checkGrid(mask)
        self.assertGreaterEqual(float(data.min()), 0.0)
        self.assertLessEqual(float(data.max()), 1.0)
        run = prot.getRunSummary()
        self.assertIsNotNone(run["retention"])
        self.assertTrue(0.0 <= run["retention"] <= 1.0)
        summary = " ".join(prot.summary())
        self.assertIn("Retention: the output shows %.0f %%" % (100 * run["retention"]), summary)
        self.assertIn("Erased-density mask", summary)

    def test_info(self):
        prot = self.beyond()
        summary = " ".join(prot.summary())
        for text in ("Half maps processed independently", "Local resolution", "Protect mask", "Confidence map"):
            self.assertIn(text, summary)
        methods = " ".join(prot.methods())
        self.assertIn("processed independently", methods)
        self.assertIn("windowed FSC", methods)
        self.assertIn("protect mask", methods)

    # ------------------------------------------------------------------ viewer
    def test_viewer_colours_by_confidence(self):
        prot = self.beyond()
        viewer = DeepEMhancerViewer(project=self.proj, protocol=prot)
        views = viewer._getVisualizeDict()["displayChimera"]("displayChimera")
        self.assertEqual(len(views), 1)
        text = open(prot._getExtraPath("deepemhancer_compare.cxc")).read()
        print(text)
        # Halves: #2, #3 -> average #4; output #5; confidence #6 colours the output's surface.
        self.assertIn("open %s" % os.path.abspath(prot.getConfidenceMap().getFileName()), text)
        self.assertIn("color sample #5 map #6 palette %s" % CONFIDENCE_PALETTE, text)
        self.assertEqual(CONFIDENCE_PALETTE, "0,red:0.5,white:1,blue")
        self.assertIn("hide #6 models", text)
        self.assertIn("tile #4,5", text)
        x, y, z = ORIGIN
        self.assertIn("volume #6 voxelSize %f origin %0.2f,%0.2f,%0.2f" % (SAMPLING, x, y, z), text)
        self.assertLess(text.index("color sample"), text.index("tile #4,5"))

    def test_viewer_draws_erased_regions_in_red(self):
        """The erased-density mask goes on the input in red exactly when the engine reported missing regions."""
        prot = self.beyond()
        viewer = DeepEMhancerViewer(project=self.proj, protocol=prot)
        mask = os.path.abspath(prot.getErasedDensityMask().getFileName())
        reported = prot.getRunSummary()
        for regions in ([], [{"volume_A3": 800, "voxel_xyz": [20.0, 26.0, 22.0], "strength_sd": 4.0}]):
            # the engine's report, with and without a region (which one a tiny untrained model gives is chance)
            prot.getRunSummary = lambda: dict(reported, missing_regions=regions)
            try:
                text = open(viewer.writeChimeraScript()).read()
            finally:
                del prot.getRunSummary
            # halves #2, #3 -> average #4; output #5; confidence #6; erased mask #7, placed with the input
            self.assertEqual("open %s" % mask in text, bool(regions))
            if regions:
                x, y, z = ORIGIN
                for expected in ("volume #7 voxelSize %f origin %0.2f,%0.2f,%0.2f" % (SAMPLING, x, y, z),
                                 "volume #7 style surface level 0.5 color %s" % ERASED_COLOR,
                                 "view position #7 sameAsModels #4"):
                    self.assertIn(expected, text)
                self.assertLess(text.index("tile #4,5"), text.index("view position #7"))

    def test_viewer_slices_with_confidence_row(self):
        from PIL import Image
        prot = self.beyond()
        viewer = DeepEMhancerViewer(project=self.proj, protocol=prot)
        png = viewer._getVisualizeDict()["displaySlices"]("displaySlices")[0].png
        image = Image.open(png)
        self.assertEqual(image.size, (900, 1225))  # one more row than without a confidence map (900 x 925)
        # The confidence row is in colour (RdBu), the map rows are grey.
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        saturation = pixels.max(axis=2) - pixels.min(axis=2)
        rows = [saturation[int(f * 1225):int((f + 0.2) * 1225)] for f in (0.08, 0.33, 0.57)]
        print("colour per row (input, output, confidence): %s" % [round(float(r.mean()), 1) for r in rows])
        self.assertGreater(rows[2].mean(), 3 * max(rows[0].mean(), rows[1].mean()))

    def test_viewer_without_evaluation_report(self):
        prot = self.beyond()
        self.assertFalse(os.path.exists(prot.getEvaluationReport()))
        self.assertNotIn("evaluationStep", [s.funcName.get() for s in prot.loadSteps()])


class TestDeepEMhancerEvaluation(BaseTest, ImportMixin):
    """An atomic model: its ligands protected (--protectModel), and the evaluation report of deepemhancer-eval."""

    @classmethod
    def setUpClass(cls):
        from pwem.protocols import ProtImportPdb
        setupTestProject(cls)
        # The halves keep their header origin (the crop's place in EMD-3488), the frame the model is fitted in.
        fileOrigin = (SAMPLING,) * 3
        cls.half1 = cls.importVolume(HALF1, label="half 1", origin=fileOrigin)
        cls.half2 = cls.importVolume(HALF2, label="half 2", origin=fileOrigin)
        prot = cls.newProtocol(ProtImportPdb, inputPdbData=ProtImportPdb.IMPORT_FROM_FILES, pdbFile=ATOM_MODEL)
        cls.launchProtocol(prot)
        cls.atomStruct = prot.outputPdb
        cls.model = makeTinyModel(os.path.join(cls.proj.path, "test_models"))
        cls.prot = cls.newProtocol(DeepEMhancerProtPostProcess, inputType=INPUT_SEPARATE_HALVES,
                                   inputHalf1=cls.half1, inputHalf2=cls.half2, modelType=MODEL_CUSTOM,
                                   customModelFile=cls.model, protectAtomStruct=cls.atomStruct, protectRadius=2.5,
                                   referenceAtomStruct=cls.atomStruct)
        cls.prot.setObjLabel("halves, protect haems, evaluation")
        cls.launchProtocol(cls.prot)

    def test_protect_model_flags(self):
        args = self.prot._getEngineArgs()
        self.assertIn("--protectModel %s --protectRadius 2.5" % os.path.abspath(self.atomStruct.getFileName()), args)
        self.assertIn("Protected: ligands of", " ".join(self.prot.summary()))
        self.assertIn("within 2.5 A of the ligand atoms", " ".join(self.prot.methods()))

    def test_evaluation_report(self):
        import json
        report = self.prot.getEvaluationReport()
        self.assertEqual(report, os.path.abspath(self.prot._getExtraPath("evaluation", "report.png")))
        self.assertTrue(os.path.exists(report))
        self.assertGreater(os.path.getsize(report), 10000)
        folder = os.path.dirname(report)
        self.assertTrue(os.path.exists(os.path.join(folder, "report.html")))
        with open(os.path.join(folder, "scores.json")) as f:
            scores = json.load(f)
        print(json.dumps(scores)[:600])
        rows = {row["map"]: row for row in scores["maps"]}
        print("CC with the model: input %.3f, deepEMhancer %.3f" % (rows["input"]["CC"], rows["deepEMhancer"]["CC"]))
        self.assertGreater(rows["input"]["CC"], 0.3)  # the model lies in the maps' frame
        self.assertTrue(np.isfinite(rows["deepEMhancer"]["CC"]))
        self.assertIn("Evaluation report", " ".join(self.prot.summary()))
        views = DeepEMhancerViewer(project=self.proj, protocol=self.prot)._getVisualizeDict()["displayEvaluation"](
            "displayEvaluation")
        self.assertEqual([v.png for v in views], [report])


class TestDeepEMhancerBeyondValidation(BaseTest, ImportMixin):
    """_validate: half-map options need half maps; the protect mask must have the input's box."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.importExampleVolumes()
        small = os.path.abspath(os.path.join(cls.proj.path, "protect_small.mrc"))
        writeMask(small, sphereDistance((40, 40, 40)) <= RADIUS)
        cls.smallMask = cls.importMask(small)
        cls.model = makeTinyModel(os.path.join(cls.proj.path, "test_models"))

    def errors(self, **kwargs):
        kwargs.update(modelType=MODEL_CUSTOM, customModelFile=self.model)
        return self.newProtocol(DeepEMhancerProtPostProcess, **kwargs).validate()

    def test_preserve_halves_without_halves(self):
        errors = self.errors(inputType=INPUT_VOLUME, inputVolume=self.volume, preserveHalves=True)
        self.assertTrue(any(re.search("Preserve half maps.*needs two half maps", e) for e in errors), errors)

    def test_local_resolution_without_halves(self):
        errors = self.errors(inputType=INPUT_VOLUME, inputVolume=self.volume, localResolution=True)
        self.assertTrue(any(re.search("Local resolution.*needs two half maps", e) for e in errors), errors)

    def test_with_halves_valid(self):
        self.assertEqual(self.errors(inputType=INPUT_SEPARATE_HALVES, inputHalf1=self.half1, inputHalf2=self.half2,
                                     preserveHalves=True, localResolution=True), [])

    def test_protect_mask_wrong_size(self):
        errors = self.errors(inputType=INPUT_VOLUME, inputVolume=self.volume, protectMask=self.smallMask)
        self.assertTrue(any("protect mask box" in e for e in errors), errors)
