# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""The DeepEMhancer protocol in a real Scipion project, running the engine in the managed environment.

    scipion3 tests deepemhancer_plugin.tests.test_protocol_postprocess
"""

import os
import re

import numpy as np
from pyworkflow.object import RELATION_TRANSFORM
from pyworkflow.tests import BaseTest, setupTestProject

from .. import Plugin
from ..constants import (INPUT_ATTACHED_HALVES, INPUT_SEPARATE_HALVES, INPUT_VOLUME, MODEL_CUSTOM, MODEL_WIDE,
                         NORM_MASK, NORM_STATS, TILING_ORIGINAL)
from ..protocols import DeepEMhancerProtPostProcess, outputs
from . import (BOX, HALF1, HALF2, MAP, MASK, ORIGIN, SAMPLING, ImportMixin, makeTinyModel, readMap, runInEngineEnv,
               shippedModel)


class TestDeepEMhancerPostProcess(BaseTest, ImportMixin):
    """All input modes and normalisations on EMD-3488 test maps (48^3, 2.1 A)."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.volume = cls.importVolume(MAP, label="import map")
        cls.volumeWithHalves = cls.importVolume(MAP, halves=(HALF1, HALF2), label="import map + halves")
        cls.half1 = cls.importVolume(HALF1, label="import half 1")
        cls.half2 = cls.importVolume(HALF2, label="import half 2")
        cls.mask = cls.importMask()
        models = os.path.join(cls.proj.path, "test_models")
        cls.noiseModel = makeTinyModel(os.path.join(models, "noise"), "tightTarget", "noise")
        cls.maskModel = makeTinyModel(os.path.join(models, "mask"), "masked", "mask")
        cls.runs = {}  # label -> finished protocol, so test cases share runs (each costs ~15 s of CPU)

    # ------------------------------------------------------------------ helpers
    def runDeepEMhancer(self, label, **kwargs):
        """Run the protocol once per label (runs are shared between test cases)."""
        kwargs.setdefault("modelType", MODEL_CUSTOM)
        if kwargs["modelType"] == MODEL_CUSTOM and kwargs.get("normalization") != NORM_MASK:
            kwargs.setdefault("customModelFile", self.noiseModel)
        return self.launchPostProcessOnce(label, **kwargs)

    def checkOutput(self, prot, inputData, reference=None):
        """Registered, on the input grid and origin, finite, and not the input; returns the output array."""
        reference = reference or prot._getReferenceVolume()
        volume = getattr(prot, outputs.outputVolume.name, None)
        self.assertIsNotNone(volume, "no %s registered" % outputs.outputVolume.name)
        self.assertTrue(os.path.exists(volume.getFileName()))
        self.assertEqual(volume.getDim(), (BOX, BOX, BOX))
        self.assertAlmostEqual(volume.getSamplingRate(), SAMPLING, places=4)
        self.assertEqual(volume.getOrigin(force=True).getShifts(), reference.getOrigin(force=True).getShifts())
        self.assertEqual(volume.getOrigin(force=True).getShifts(), ORIGIN)
        data = readMap(volume.getFileName())
        self.assertEqual(data.shape, inputData.shape)
        self.assertTrue(np.all(np.isfinite(data)))
        self.assertGreater(float(data.std()), 0.0, "constant output")
        self.assertFalse(np.allclose(data, inputData), "output equals the input")
        parents = self.proj.mapper.getRelationParents(RELATION_TRANSFORM, volume)
        parentIds = {p.getObjId() for p in parents}
        for pointer in prot._getInputPointers():
            self.assertIn(pointer.get().getObjId(), parentIds, "missing input -> output relation")
        return data

    # ------------------------------------------------------------------ cases
    def test_volume_default_model(self):
        """A single map with the default tightTarget model (the shipped one when installed)."""
        shipped = shippedModel("tightTarget")
        kwargs = {"modelType": 0} if shipped else {}
        prot = self.runDeepEMhancer("map, shipped tightTarget" if shipped else "map, automatic",
                                    inputType=INPUT_VOLUME, inputVolume=self.volume, **kwargs)
        data = self.checkOutput(prot, readMap(MAP))
        if shipped:
            # The trained model outputs a density (about 0 in the solvent, peaks near 1; see its model card): the
            # output follows the input, and the molecule (the shipped mask) stands out from the solvent more than
            # in the input, measured as (mean inside - mean outside) / SD outside.
            inputData, molecule = readMap(MAP), readMap(MASK) > 0.5
            self.assertGreater(np.corrcoef(data.ravel(), inputData.ravel())[0, 1], 0.3)

            def contrast(x):
                return float((x[molecule].mean() - x[~molecule].mean()) / x[~molecule].std())
            print("molecule/solvent contrast: input %.2f, output %.2f" % (contrast(inputData), contrast(data)))
            self.assertGreater(contrast(data), contrast(inputData) + 0.3)
        # the self-check runs first, in the run's log; the summary says what the engine did
        with open(prot.getLogPaths()[0]) as f:   # run.stdout: the self-check, then the engine's command
            log = f.read()
        engineCommand = log.index("-o %s" % os.path.abspath(prot._getOutputFile()))
        self.assertLess(log.index("deepemhancer self-check"), engineCommand)
        self.assertLess(log.index("self-check: all ok"), engineCommand)
        summary = " ".join(prot.summary())
        self.assertRegex(summary, r"Run: model deepemhancer_tightTarget\.json .*runtime openvino, fast tiling, "
                                  r"\d+ of \d+ cubes predicted, [\d.]+ s\." if shipped else
                         r"Run: model .*runtime openvino, fast tiling, \d+ of \d+ cubes predicted")

    def test_installed_models_folder(self):
        """-p <kind> with the models folder of the plugin (DEEPEMHANCER_MODELS -> engine DEEPEMHANCER_MODELS_DIR)."""
        folder = os.path.join(self.proj.path, "installed_models")
        makeTinyModel(folder, "wideTarget", "noise")
        saved = os.environ.get("DEEPEMHANCER_MODELS"), Plugin._vars["DEEPEMHANCER_MODELS"]
        os.environ["DEEPEMHANCER_MODELS"] = folder  # the run's subprocess defines the variables again from here
        Plugin._vars["DEEPEMHANCER_MODELS"] = folder
        try:
            prot = self.runDeepEMhancer("map, installed wideTarget", inputType=INPUT_VOLUME,
                                        inputVolume=self.volume, modelType=MODEL_WIDE)
        finally:
            if saved[0] is None:
                os.environ.pop("DEEPEMHANCER_MODELS")
            else:
                os.environ["DEEPEMHANCER_MODELS"] = saved[0]
            Plugin._vars["DEEPEMHANCER_MODELS"] = saved[1]
        self.assertIn("-p wideTarget", prot._getEngineArgs())
        self.assertNotIn("--deepLearningModelPath", prot._getEngineArgs())
        logs = "".join(open(f).read() for f in prot.getLogPaths()[:2] if os.path.exists(f))
        self.assertIn("model %s" % os.path.join(folder, "deepemhancer_wideTarget.json"), logs)
        self.checkOutput(prot, readMap(MAP))

    def test_attached_and_separate_halves_agree(self):
        """Attached half maps and the same two half maps given separately give the same map (their average)."""
        attached = self.runDeepEMhancer("attached halves", inputType=INPUT_ATTACHED_HALVES,
                                        inputVolume=self.volumeWithHalves)
        separate = self.runDeepEMhancer("separate halves", inputType=INPUT_SEPARATE_HALVES,
                                        inputHalf1=self.half1, inputHalf2=self.half2)
        average = (readMap(HALF1) + readMap(HALF2)) / 2
        a = self.checkOutput(attached, average)
        s = self.checkOutput(separate, average, reference=self.half1)
        np.testing.assert_allclose(a, s, rtol=1e-5, atol=1e-6 * float(np.abs(a).max()))
        for prot in (attached, separate):
            self.assertIn("-i2", prot._getEngineArgs())

    def test_noise_stats_match_automatic(self):
        """Given the noise statistics the engine estimates itself, the result equals automatic normalisation;
        other statistics change it."""
        stats = runInEngineEnv(
            "python -c \"from deepemhancer.io import read_map; from deepemhancer.normalize import "
            "estimate_noise_stats as e; s = e(read_map('%s')[0], voxel_size=%r); "
            "print(repr(float(s.mean)), repr(float(s.std)))\"" % (MAP, SAMPLING)).split()
        mean, std = float(stats[0]), float(stats[1])
        auto = self.runDeepEMhancer("map, automatic", inputType=INPUT_VOLUME, inputVolume=self.volume)
        # The engine logs the statistics it measured: the same ones.
        logs = "".join(open(f).read() for f in auto.getLogPaths()[:2] if os.path.exists(f))
        logged = re.search(r"noise mean (\S+) SD (\S+) \(auto\)", logs)
        self.assertIsNotNone(logged, "the engine did not log its noise statistics")
        self.assertAlmostEqual(float(logged.group(1)), mean, delta=1e-4 * abs(mean) + 1e-9)
        self.assertAlmostEqual(float(logged.group(2)), std, delta=1e-4 * std)
        given = self.runDeepEMhancer("map, noise stats", inputType=INPUT_VOLUME, inputVolume=self.volume,
                                     normalization=NORM_STATS, noiseMean=mean, noiseStd=std)
        doubled = self.runDeepEMhancer("map, noise stats x2", inputType=INPUT_VOLUME, inputVolume=self.volume,
                                       normalization=NORM_STATS, noiseMean=mean, noiseStd=2 * std,
                                       tiling=TILING_ORIGINAL)
        a, g, d = (self.checkOutput(p, readMap(MAP)) for p in (auto, given, doubled))
        np.testing.assert_allclose(g, a, rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))
        self.assertFalse(np.allclose(d, a, rtol=1e-3, atol=1e-3 * float(np.abs(a).max())))
        self.assertIn("--noiseStats", given._getEngineArgs())
        self.assertIn("--tiling original", doubled._getEngineArgs())

    def test_binary_mask(self):
        """Mask normalisation with half maps and a masked model; cleaning on."""
        prot = self.runDeepEMhancer("halves, mask", inputType=INPUT_SEPARATE_HALVES, inputHalf1=self.half1,
                                    inputHalf2=self.half2, normalization=NORM_MASK, inputMask=self.mask,
                                    customMaskedModel=True, customModelFile=self.maskModel,
                                    performCleaning=True, cleaningFraction=0.05)
        args = prot._getEngineArgs()
        self.assertIn(" -m ", args)
        self.assertNotIn(" -p ", args)
        self.assertIn("--cleaningStrengh 0.05", args)
        data = self.checkOutput(prot, (readMap(HALF1) + readMap(HALF2)) / 2, reference=self.half1)
        auto = self.runDeepEMhancer("separate halves", inputType=INPUT_SEPARATE_HALVES, inputHalf1=self.half1,
                                    inputHalf2=self.half2)
        self.assertFalse(np.allclose(data, readMap(auto.outputVolume.getFileName())))

    def test_resume_skips_only_fresh_output(self):
        """A finished output is reused only while it is newer than its inputs and made with the same flags."""
        prot = self.runDeepEMhancer("map, automatic", inputType=INPUT_VOLUME, inputVolume=self.volume)
        args = prot._getEngineArgs()
        self.assertTrue(prot._isOutputUpToDate(args))
        self.assertFalse(prot._isOutputUpToDate(args.replace("-b 8", "-b 4")))
        output = prot._getOutputFile()
        before = os.path.getmtime(output)
        prot.enhanceStep(args)  # a resumed run: nothing to do
        self.assertEqual(os.path.getmtime(output), before)
        inputTime = os.path.getmtime(prot._getInputWorkFiles()[0])
        os.utime(output, (inputTime - 60, inputTime - 60))  # as if the input changed after the output was made
        try:
            self.assertFalse(prot._isOutputUpToDate(args))
        finally:
            os.utime(output, (before, before))

    def test_info(self):
        prot = self.runDeepEMhancer("map, automatic", inputType=INPUT_VOLUME, inputVolume=self.volume)
        self.assertTrue(any("custom" in line for line in prot.summary()))
        methods = " ".join(prot.methods())
        self.assertIn("SanchezGarcia2021", methods)
        self.assertEqual(prot._citations(), ["SanchezGarcia2021"])
        from .. import _bibtex
        self.assertIn("10.1038/s42003-021-02399-1", str(_bibtex["SanchezGarcia2021"]))


class TestDeepEMhancerValidation(BaseTest, ImportMixin):
    """_validate catches what would make the engine fail, with actionable messages."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.importExampleVolumes()
        small = os.path.abspath("small_half.mrc")
        cls._writeCrop(HALF2, small, 40)
        cls.smallHalf = cls.importVolume(small, label="40^3 half", origin=None)
        smallMask = os.path.abspath("small_mask.mrc")
        cls._writeCrop(os.path.join(os.path.dirname(HALF1), "emd3488_mask.mrc"), smallMask, 40)
        cls.smallMask = cls.importMask(smallMask)
        cls.model = makeTinyModel(os.path.join(cls.proj.path, "test_models"))

    @staticmethod
    def _writeCrop(src, dst, size):
        import mrcfile
        with mrcfile.new(dst, overwrite=True) as mrc:
            mrc.set_data(readMap(src)[:size, :size, :size].copy())
            mrc.voxel_size = SAMPLING

    def errors(self, **kwargs):
        kwargs.setdefault("modelType", MODEL_CUSTOM)
        kwargs.setdefault("customModelFile", self.model)
        return self.newProtocol(DeepEMhancerProtPostProcess, **kwargs).validate()

    def test_valid(self):
        self.assertEqual(self.errors(inputVolume=self.volume), [])

    def test_halves_of_different_size(self):
        errors = self.errors(inputType=INPUT_SEPARATE_HALVES, inputHalf1=self.half1, inputHalf2=self.smallHalf)
        self.assertTrue(any("differ in size" in e for e in errors), errors)

    def test_halves_of_different_sampling(self):
        other = self.importVolume(HALF2, label="half 2 at 1.05", origin=None)
        other.setSamplingRate(1.05)
        errors = self.errors(inputType=INPUT_SEPARATE_HALVES, inputHalf1=self.half1, inputHalf2=other)
        self.assertTrue(any("sampling" in e for e in errors), errors)

    def test_volume_without_attached_halves(self):
        errors = self.errors(inputType=INPUT_ATTACHED_HALVES, inputVolume=self.volume)
        self.assertTrue(any("no attached half maps" in e for e in errors), errors)

    def test_mask_missing_or_wrong_size(self):
        missing = self.errors(inputVolume=self.volume, normalization=NORM_MASK, customMaskedModel=True)
        self.assertTrue(any("needs a mask" in e for e in missing), missing)
        wrong = self.errors(inputVolume=self.volume, normalization=NORM_MASK, inputMask=self.smallMask,
                            customMaskedModel=True)
        self.assertTrue(any("mask box" in e for e in wrong), wrong)

    def test_gpu_and_cpu_command(self):
        """GPUs given by the executor (also on a queue) reach the engine; without a GPU it runs on the CPU."""
        from pyworkflow.utils.process import buildRunCommand
        from ..protocols import protocol_postprocess
        prot = self.newProtocol(DeepEMhancerProtPostProcess, inputVolume=self.volume, modelType=MODEL_CUSTOM,
                                customModelFile=self.model)
        args = prot._getEngineArgs()
        saved = protocol_postprocess.hostHasNvidiaGpu
        try:
            protocol_postprocess.hostHasNvidiaGpu = lambda: True
            program, gpuArgs = prot._getEngineCommand(args)
            command = buildRunCommand(program, gpuArgs, 1, gpuList=[0, 2])
            self.assertIn("export CUDA_VISIBLE_DEVICES=0,2 && %s" % Plugin.getProgram(), command)
            self.assertTrue(command.rstrip().endswith(" -g all"), command)
            self.assertIn("export CUDA_VISIBLE_DEVICES=1 &&", buildRunCommand(program, gpuArgs, 1, gpuList=[1]))
            prot.useGpu.set(False)
            self.assertEqual(prot._getEngineCommand(args), (Plugin.getProgram(), args + " -g -1"))
            protocol_postprocess.hostHasNvidiaGpu = lambda: False
            prot.useGpu.set(True)
            self.assertEqual(prot._getEngineCommand(args), (Plugin.getProgram(), args + " -g -1"))
        finally:
            protocol_postprocess.hostHasNvidiaGpu = saved

    def test_missing_model_file(self):
        errors = self.errors(inputVolume=self.volume, customModelFile="/nonexistent/deepemhancer_x.json")
        self.assertTrue(any("does not exist" in e for e in errors), errors)

    def test_missing_environment_names_install_command(self):
        saved = dict(Plugin._vars)
        try:
            Plugin._vars["DEEPEMHANCER_HOME"] = "/nonexistent/deepemhancer-env"
            Plugin._vars["DEEPEMHANCER_MODELS"] = "/nonexistent/deepemhancer-models"
            errors = self.errors(inputVolume=self.volume)
            self.assertTrue(any("scipion3 installb deepemhancer" in e for e in errors), errors)
            shippedless = self.errors(inputVolume=self.volume, modelType=0)
            if shippedModel("tightTarget") is None:
                self.assertTrue(any("scipion3 installb deepemhancerModels" in e for e in shippedless), shippedless)
        finally:
            Plugin._vars.clear()
            Plugin._vars.update(saved)
