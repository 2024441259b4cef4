# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""The protocol form in Scipion's real Tk GUI, in a window on a private Xvfb display.

    scipion3 tests deepemhancer_plugin.tests.test_form_gui

Needs the Debian package xvfb; where no X server can be started the tests are skipped with the reason printed.
"""

import os
import select
import shutil
import subprocess
import time

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject

from ..constants import (INPUT_ATTACHED_HALVES, INPUT_SEPARATE_HALVES, INPUT_VOLUME, MODEL_CUSTOM, MODEL_TIGHT,
                         NORM_AUTO, NORM_MASK, NORM_STATS)
from ..protocols import DeepEMhancerProtPostProcess
from . import MAP, ImportMixin

SCREENSHOT = "deepemhancer_form.png"
FORM_PARAMS = ["inputType", "inputVolume", "inputHalf1", "inputHalf2", "normalization", "noiseMean", "noiseStd",
               "inputMask", "modelType", "customMaskedModel", "customModelFile", "performCleaning",
               "cleaningFraction", "batchSize", "tiling"]


def startXvfb(timeout=10.0):
    """Start Xvfb on a free display; returns (process, ':N') or (None, reason)."""
    if not shutil.which("Xvfb"):
        return None, "Xvfb is not installed (apt-get install xvfb)"
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1400x1100x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    ready, _, _ = select.select([read], [], [], timeout)
    number = os.read(read, 64).decode().strip() if ready else ""
    os.close(read)
    if not number:
        proc.kill()
        proc.wait()
        return None, "Xvfb did not start within %.0f s" % timeout
    return proc, ":" + number


class TestDeepEMhancerForm(BaseTest, ImportMixin):

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.volume = cls.importVolume(MAP, label="import map")
        cls.oldDisplay = os.environ.get("DISPLAY")
        cls.xvfb, display = startXvfb()
        cls.skipReason = None if cls.xvfb else display
        if cls.skipReason:
            print("SKIPPING the Tk form tests: %s" % cls.skipReason)
            return
        os.environ["DISPLAY"] = display
        import pyworkflow.gui.project  # noqa: F401 (must come before pyworkflow.gui.form: circular import)
        import pyworkflow.gui as pwgui
        # A hidden master: a form without one calls sys.exit() when it closes.
        cls.master = pwgui.Window("host", None, icon=None)
        cls.master.root.withdraw()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "master", None) is not None:
            cls.master.root.destroy()
        if cls.xvfb:
            cls.xvfb.terminate()
            cls.xvfb.wait()
        if cls.oldDisplay is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = cls.oldDisplay

    def setUp(self):
        if self.skipReason:
            self.skipTest(self.skipReason)

    def openForm(self, **kwargs):
        from pyworkflow.gui.form import FormWindow
        from pyworkflow.protocol.params import LEVEL_ADVANCED
        prot = self.newProtocol(DeepEMhancerProtPostProcess, inputVolume=self.volume, **kwargs)
        prot.expertLevel.set(LEVEL_ADVANCED)  # show the advanced parameters too
        saved = []
        form = FormWindow("deepEMhancer form test", prot, lambda *args, **kw: saved.append(args),
                          self.master)
        form.adjustSize()
        form.root.deiconify()
        form.root.wait_visibility(form.root)
        self.pump(form)
        return prot, form

    @staticmethod
    def pump(form, seconds=0.3):
        end = time.time() + seconds
        while time.time() < end:
            form.root.update()
            time.sleep(0.02)

    @staticmethod
    def visible(form, name):
        return bool(form.widgetDict[name].label.grid_info())

    def assertVisible(self, form, shown, hidden):
        self.assertEqual({n: self.visible(form, n) for n in shown + hidden},
                         {**{n: True for n in shown}, **{n: False for n in hidden}})

    def setValue(self, form, name, value):
        form.widgetDict[name].set(value)
        self.pump(form, 0.1)

    def test_form_renders_every_parameter(self):
        from PIL import ImageGrab
        prot, form = self.openForm()
        try:
            self.assertEqual(sorted(n for n, _ in prot._definition.iterParams() if n in FORM_PARAMS),
                             sorted(FORM_PARAMS))
            for name in FORM_PARAMS:
                self.assertIn(name, form.widgetDict, "parameter %s has no widget" % name)
            self.assertTrue(prot.allowsGpu(), "the hidden GPU list gives the form its GPU fields")
            root = form.root
            bbox = (root.winfo_rootx(), root.winfo_rooty(),
                    root.winfo_rootx() + root.winfo_width(), root.winfo_rooty() + root.winfo_height())
            image = ImageGrab.grab(bbox=bbox, xdisplay=os.environ["DISPLAY"])
            path = os.path.join(self.proj.path, SCREENSHOT)
            image.save(path)
            print("Form screenshot: %s (%dx%d)" % (path, image.width, image.height))
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
            self.assertGreater(image.width, 400)
            self.assertGreater(image.height, 300)
            self.assertGreater(float(pixels.std()), 10.0, "the screenshot is blank")
        finally:
            form.close()

    def test_conditions_show_and_hide(self):
        prot, form = self.openForm()
        try:
            # Defaults: a single volume, automatic normalisation, tightTarget.
            self.assertVisible(form, ["inputType", "inputVolume", "normalization", "modelType", "performCleaning",
                                      "batchSize", "tiling"],
                               ["inputHalf1", "inputHalf2", "noiseMean", "noiseStd", "inputMask",
                                "customMaskedModel", "customModelFile", "cleaningFraction"])
            self.setValue(form, "inputType", INPUT_SEPARATE_HALVES)
            self.assertVisible(form, ["inputHalf1", "inputHalf2"], ["inputVolume"])
            self.setValue(form, "inputType", INPUT_ATTACHED_HALVES)
            self.assertVisible(form, ["inputVolume"], ["inputHalf1", "inputHalf2"])
            self.setValue(form, "inputType", INPUT_VOLUME)

            self.setValue(form, "normalization", NORM_STATS)
            self.assertVisible(form, ["noiseMean", "noiseStd", "modelType"], ["inputMask", "customMaskedModel"])
            self.setValue(form, "normalization", NORM_MASK)
            self.assertVisible(form, ["inputMask", "customMaskedModel"],
                               ["noiseMean", "noiseStd", "modelType", "customModelFile"])
            self.setValue(form, "customMaskedModel", True)
            self.assertVisible(form, ["customModelFile"], [])
            self.setValue(form, "normalization", NORM_AUTO)
            self.assertVisible(form, ["modelType"], ["inputMask", "customMaskedModel", "customModelFile"])

            self.setValue(form, "modelType", MODEL_CUSTOM)
            self.assertVisible(form, ["customModelFile"], [])
            self.setValue(form, "modelType", MODEL_TIGHT)
            self.assertVisible(form, [], ["customModelFile"])

            self.setValue(form, "performCleaning", True)
            self.assertVisible(form, ["cleaningFraction"], [])
            self.assertEqual(prot.inputType.get(), INPUT_VOLUME)
            self.assertTrue(prot.performCleaning.get())
        finally:
            form.close()
