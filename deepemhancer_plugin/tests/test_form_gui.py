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
import shutil
import subprocess
import sys
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


def _displayWorks(display):
    """A real X client connection (Tk) to the display succeeds."""
    check = subprocess.run([sys.executable, "-c", "import tkinter; tkinter.Tk().destroy()"],
                           env=dict(os.environ, DISPLAY=display), capture_output=True, timeout=20)
    return check.returncode == 0


def startXvfb(timeout=10.0, attempts=8):
    """Start Xvfb on a free display; returns (process, ':N') or (None, reason).

    Display numbers are tried from a high, per-process offset: X clients try the abstract socket of a display
    first, which is shared by every container on the same network namespace, so a low number may reach somebody
    else's server. A display counts only once a real client has connected to it.
    """
    if not shutil.which("Xvfb"):
        return None, "Xvfb is not installed (apt-get install xvfb)"
    first = 100 + os.getpid() % 800
    for number in range(first, first + attempts):
        if os.path.exists("/tmp/.X%d-lock" % number):
            continue
        display = ":%d" % number
        proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1400x1100x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if os.path.exists("/tmp/.X11-unix/X%d" % number) and _displayWorks(display):
                return proc, display
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return None, "no Xvfb display could be started and connected to (tried :%d-:%d)" % (first, first + attempts - 1)


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
