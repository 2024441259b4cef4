# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""The workflow template run headless, then the viewer's ChimeraX script and slices PNG on its result.

    scipion3 tests deepemhancer_plugin.tests.test_template_viewer
"""

import os
import re

import numpy as np
from pwem import Domain
from pyworkflow.template import TemplateList
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER

from ..constants import INPUT_ATTACHED_HALVES, MODEL_CUSTOM, PLUGIN_NAME
from ..protocols import DeepEMhancerProtPostProcess, outputs
from ..viewers import DeepEMhancerViewer
from ..viewers.viewer_postprocess import fsc, suggestedLevels
from . import HALF1, HALF2, MAP, SAMPLING, makeTinyModel, readMap

TEMPLATE_ID = "%s-deepemhancer_halfmaps" % PLUGIN_NAME


class TestDeepEMhancerTemplateAndViewer(BaseTest):

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.model = makeTinyModel(os.path.join(cls.proj.path, "test_models"))
        templates = TemplateList()
        templates.addPluginTemplates()
        found = [t for t in templates.templates if t.getObjId() == TEMPLATE_ID]
        assert found, "template %s not found among %s" % (TEMPLATE_ID, [t.getObjId() for t in templates.templates])
        template = found[0]
        template.replaceEnvVariables()
        template.parseContent()
        values = dict(map=MAP, half1=HALF1, half2=HALF2, sampling=SAMPLING, gpus="0", model=MODEL_CUSTOM,
                      modelFile=cls.model, batch=4)
        for alias, value in values.items():
            assert template.setParamValue(alias, str(value)) == 1, "alias %s not in the template" % alias
        cls.aliases = {f.getAlias() for f in template.params.values()}
        protocols = cls.proj.loadProtocols(template.createTemplateFile())
        for key in sorted(protocols, key=int):
            cls.launchProtocol(protocols[key])
        cls.prot = [p for p in protocols.values() if isinstance(p, DeepEMhancerProtPostProcess)][0]

    # ------------------------------------------------------------------ template
    def test_template_ran_headless(self):
        self.assertEqual(self.aliases, {"map", "half1", "half2", "sampling", "gpus", "model", "modelFile", "batch"})
        prot = self.prot
        self.assertTrue(prot.isFinished())
        self.assertEqual(prot.inputType.get(), INPUT_ATTACHED_HALVES)
        self.assertEqual(prot.batchSize.get(), 4)
        volume = getattr(prot, outputs.outputVolume.name)
        self.assertAlmostEqual(volume.getSamplingRate(), SAMPLING, places=4)
        data = readMap(volume.getFileName())
        self.assertEqual(data.shape, readMap(MAP).shape)
        self.assertTrue(np.all(np.isfinite(data)))

    # ------------------------------------------------------------------ viewer
    def test_viewer_is_registered(self):
        viewers = Domain.findViewers(self.prot, DESKTOP_TKINTER)
        self.assertIn(DeepEMhancerViewer, viewers)

    def test_chimerax_script(self):
        viewer = DeepEMhancerViewer(project=self.proj, protocol=self.prot)
        views = viewer._getVisualizeDict()["displayChimera"]("displayChimera")
        self.assertEqual(len(views), 1)
        self.assertIn("ChimeraX", views[0]._cmd)
        cxc = self.prot._getExtraPath("deepemhancer_compare.cxc")
        self.assertIn(os.path.abspath(cxc), views[0]._cmd)
        text = open(cxc).read()
        print(text)
        output = getattr(self.prot, outputs.outputVolume.name)
        x, y, z = output.getOrigin(force=True).getShifts()
        half1, half2 = (os.path.abspath(f) for f in self.prot._getInputWorkFiles())
        for expected in ("open %s" % half1, "open %s" % half2, "volume add #2,3 scaleFactors 0.5,0.5 modelId #4",
                         "open %s" % os.path.abspath(output.getFileName()), "tile #4,5",
                         "volume #4 style surface voxelSize %f" % SAMPLING,
                         "volume #5 style surface voxelSize %f" % SAMPLING,
                         "volume #4 origin %0.2f,%0.2f,%0.2f" % (x, y, z),
                         "volume #5 origin %0.2f,%0.2f,%0.2f" % (x, y, z), "cofr 0,0,0", "view"):
            self.assertIn(expected, text)
        self.assertTrue(os.path.exists(self.prot._getExtraPath("deepemhancer_axis.bild")))

        # Suggested thresholds: the same contour logic for both maps = the same enclosed volume.
        levels = {int(m): float(v) for m, v in re.findall(r"volume #(\d+) level (\S+)", text)}
        inputData = (readMap(HALF1) + readMap(HALF2)) / 2
        outputData = readMap(output.getFileName())
        expected = dict(zip((4, 5), suggestedLevels(inputData, outputData)))
        self.assertEqual(set(levels), {4, 5})
        for model, level in expected.items():
            self.assertAlmostEqual(levels[model], level, delta=1e-5 * abs(level))
        self.assertAlmostEqual(np.mean(inputData > levels[4]), np.mean(outputData > levels[5]), delta=0.01)

    def test_slices_png(self):
        from PIL import Image
        viewer = DeepEMhancerViewer(project=self.proj, protocol=self.prot)
        views = viewer._getVisualizeDict()["displaySlices"]("displaySlices")
        png = views[0].png
        self.assertEqual(png, os.path.abspath(self.prot._getExtraPath("deepemhancer_slices.png")))
        image = Image.open(png)
        self.assertEqual(image.size, (900, 925))
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
        self.assertGreater(float(pixels.std()), 10.0)
        # The slice rows (input, output) differ: the figure really shows two maps.
        top, middle = pixels[60:330], pixels[330:600]
        self.assertGreater(float(np.abs(top - middle).mean()), 1.0)

    def test_fsc(self):
        half1, half2 = readMap(HALF1), readMap(HALF2)
        freq, same = fsc(half1, half1, SAMPLING)
        self.assertAlmostEqual(freq[-1], 1 / (2 * SAMPLING), places=6)  # up to Nyquist
        np.testing.assert_allclose(same[1:], 1.0, atol=1e-6)
        _, curve = fsc(half1, half2, SAMPLING)
        # Halves = the same map plus independent noise of equal overall power: strongly correlated at low
        # resolution, where the map's power dominates, and partly correlated in every shell up to Nyquist.
        self.assertGreater(curve[1:4].min(), 0.8)
        self.assertLess(curve[4:].max(), 0.8)
        self.assertGreater(curve[1:].min(), 0.1)
