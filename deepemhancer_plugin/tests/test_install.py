# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Registration, variables and the install hooks (conda and venv command lines; real runs where cheap).

    scipion3 tests deepemhancer_plugin.tests.test_install
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import pwem
import pyworkflow as pw
from pyworkflow.tests import BaseTest

from .. import Plugin
from ..constants import (DEEPEMHANCER_BACKEND, DEEPEMHANCER_KERAS_BACKEND, DEEPEMHANCER_MODELS, ENGINE_PACKAGE,
                         ENGINE_VERSION, ENV_NAME, FLAG_ENGINE, FLAG_ENV, FLAG_OFFICIAL_MODELS, INSTALL_BACKENDS_VAR,
                         KERAS_BACKEND_REQUIREMENTS, depsFlag, envRequirements, installKerasBackends,
                         FLAG_SHIPPED_MODELS, MODELS_PACKAGE, PLUGIN_NAME, enginePackageDir)

CONDA_INIT = 'eval "$(/opt/miniconda3/bin/conda shell.bash hook)"'


def shSyntaxOk(command):
    """True if /bin/sh (dash on Debian) parses the command."""
    return subprocess.run(["/bin/sh", "-n", "-c", command], capture_output=True).returncode == 0


class CondaConfigured:
    """Context manager: Scipion configured with CONDA_ACTIVATION_CMD (or explicitly without it)."""

    def __init__(self, value):
        self.value = value

    def __enter__(self):
        self.saved = (pw.Config.CONDA_ACTIVATION_CMD, Plugin._condaActivationCmd)
        pw.Config.CONDA_ACTIVATION_CMD = self.value
        Plugin._condaActivationCmd = None

    def __exit__(self, *exc):
        pw.Config.CONDA_ACTIVATION_CMD, Plugin._condaActivationCmd = self.saved


class TestDeepEMhancerInstall(BaseTest):

    @classmethod
    def setUpClass(cls):
        pwem.Domain.getPlugins()  # registers the plugin and defines its variables

    # ------------------------------------------------------------------ registration
    def test_registered_with_protocol_menu(self):
        from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig
        self.assertIn(PLUGIN_NAME, pwem.Domain.getPlugins())
        self.assertIsNotNone(pwem.Domain.findClass("DeepEMhancerProtPostProcess"))
        tree = ProtocolTreeConfig.load(pwem.Domain, pw.Config.SCIPION_PROTOCOLS)
        spa = tree["Protocols SPA"]

        def find(node, path):
            if not path:
                return node
            for child in node.childs:
                if str(child.text) == path[0]:
                    return find(child, path[1:])
            return None

        postprocess = find(spa, ["3D", "Postprocess"])
        self.assertIsNotNone(postprocess, "3D -> Postprocess not in the protocol tree")
        self.assertIn("DeepEMhancerProtPostProcess", [str(c.value) for c in postprocess.childs])

    def test_variables_and_environ(self):
        emRoot = pwem.Config.EM_ROOT
        self.assertEqual(Plugin.getHome(), os.path.join(emRoot, ENV_NAME))
        self.assertEqual(Plugin.getModelsDir(), os.path.join(emRoot, "%s-%s" % (MODELS_PACKAGE, ENGINE_VERSION)))
        environ = Plugin.getEnviron()
        self.assertEqual(environ["DEEPEMHANCER_MODELS_DIR"], Plugin.getModelsDir())
        self.assertEqual(environ["KERAS_BACKEND"], Plugin.getVar(DEEPEMHANCER_KERAS_BACKEND))
        self.assertEqual(environ[DEEPEMHANCER_BACKEND], Plugin.getVar(DEEPEMHANCER_BACKEND))
        self.assertNotIn("PYTHONPATH", environ)
        self.assertNotIn("PYTHONHOME", environ)
        self.assertTrue(Plugin.getProgram().endswith("&& python -m %s" % ENGINE_PACKAGE))
        self.assertTrue(shSyntaxOk(Plugin.getProgram() + " --help"))

    def test_engine_version_read_without_keras(self):
        code = ("import sys; from deepemhancer_plugin.constants import ENGINE_VERSION; "
                "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules and 'torch' not in sys.modules; "
                "print(ENGINE_VERSION)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), ENGINE_VERSION)

    # ------------------------------------------------------------------ generated commands
    def checkCommon(self, commands, flags):
        self.assertEqual([t for _, t in commands], flags)
        for command, target in commands:
            self.assertTrue(command.rstrip().endswith("touch %s" % target), command)
            self.assertTrue(shSyntaxOk(command), "not valid /bin/sh: %s" % command)
            self.assertNotIn("source ", command)

    def test_venv_commands(self):
        with CondaConfigured(""):
            self.assertFalse(Plugin.usesConda())
            commands = Plugin.getEnvInstallCommands()
        self.checkCommon(commands, [FLAG_ENV, depsFlag(envRequirements()), FLAG_ENGINE])
        create, deps, engine = (c for c, _ in commands)
        self.assertIn("-m venv --clear venv", create)
        self.assertNotIn("conda", " ".join(c for c, _ in commands))
        self.assertTrue(deps.startswith(". ./venv/bin/activate && python -m pip install "))
        for requirement in envRequirements():
            self.assertIn(requirement, deps)
        # This checkout has setup.py next to the engine: the env gets an editable install of it.
        self.assertIn("pip install --no-deps -e %s" % os.path.dirname(enginePackageDir()), engine)

    def test_conda_commands(self):
        with CondaConfigured(CONDA_INIT):
            self.assertTrue(Plugin.usesConda())
            commands = Plugin.getEnvInstallCommands()
            models = Plugin.getModelsInstallCommands()
        self.checkCommon(commands, [FLAG_ENV, depsFlag(envRequirements()), FLAG_ENGINE])
        create, deps, engine = (c for c, _ in commands)
        self.assertEqual(create,
                         "%s&& conda create -y -n %s python=3.11 && touch %s" % (CONDA_INIT, ENV_NAME, FLAG_ENV))
        self.assertTrue(deps.startswith("%s&& conda activate %s && python -m pip install " % (CONDA_INIT, ENV_NAME)))
        self.assertIn("openvino", deps)
        self.assertIn("conda activate %s && " % ENV_NAME, engine)
        self.assertNotIn("venv", " ".join(c for c, _ in commands))
        self.assertIn("conda activate %s" % ENV_NAME, models[1][0])

    def test_lean_env_on_cpu_hosts_and_keras_backends_on_request(self):
        """A CPU-only host gets OpenVINO and no torch or TensorFlow; DEEPEMHANCER_KERAS_BACKENDS adds backends, and
        another choice names another requirements flag (so `installb` installs what was added)."""
        cpu = envRequirements({INSTALL_BACKENDS_VAR: "none"})
        self.assertIn("openvino>=2025.0", cpu)
        self.assertFalse([r for r in cpu if r.startswith(("torch", "tensorflow"))], cpu)
        both = envRequirements({INSTALL_BACKENDS_VAR: "torch, tensorflow"})
        self.assertEqual(both, cpu + KERAS_BACKEND_REQUIREMENTS["torch"] + KERAS_BACKEND_REQUIREMENTS["tensorflow"])
        self.assertNotEqual(depsFlag(cpu), depsFlag(both))
        self.assertEqual(installKerasBackends({}), ["torch"] if os.path.isdir("/proc/driver/nvidia/gpus") and
                         os.listdir("/proc/driver/nvidia/gpus") else [])
        with self.assertRaises(ValueError):
            installKerasBackends({INSTALL_BACKENDS_VAR: "caffe"})

    def test_copy_install_into_env_without_setup_py(self):
        """A non-editable plugin install (no setup.py beside the engine) copies the package into the env."""
        tmp = tempfile.mkdtemp(prefix="dh-install-")
        try:
            installed = os.path.join(tmp, "site", ENGINE_PACKAGE)
            shutil.copytree(enginePackageDir(), installed, ignore=shutil.ignore_patterns("*.h5", "__pycache__"))
            os.makedirs(os.path.join(installed, "__pycache__"))
            command = Plugin._engineInstallCmd(installed)
            self.assertNotIn("pip install", command)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", os.path.join(tmp, "env")], check=True)
            run = subprocess.run(". ./env/bin/activate && %s && touch %s" % (command, FLAG_ENGINE), shell=True,
                                 executable="/bin/sh", cwd=tmp, capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            site = subprocess.run([os.path.join(tmp, "env", "bin", "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True).stdout.strip()
            copied = os.path.join(site, ENGINE_PACKAGE)
            self.assertTrue(os.path.exists(os.path.join(copied, "__init__.py")))
            self.assertTrue(os.path.exists(os.path.join(copied, "cli.py")))
            self.assertFalse(os.path.exists(os.path.join(copied, "__pycache__")))
            self.assertTrue(os.path.exists(os.path.join(tmp, FLAG_ENGINE)))
        finally:
            shutil.rmtree(tmp)

    # ------------------------------------------------------------------ through scipion-app's installer
    def test_define_binaries_with_scipion_installer(self):
        try:
            from scipion.install.funcs import Environment
        except ImportError:
            self.skipTest("scipion-app is not installed (pip install scipion-app)")
        env = Environment(args=["--show"])
        Plugin.defineBinaries(env)
        self.assertEqual(env._packages[ENGINE_PACKAGE], [(ENGINE_PACKAGE, ENGINE_VERSION)])
        self.assertEqual(env._packages[MODELS_PACKAGE], [(MODELS_PACKAGE, ENGINE_VERSION)])
        target = env.getTarget("%s-%s" % (ENGINE_PACKAGE, ENGINE_VERSION))
        commands = [str(c) for c in target.getCommands()]
        self.assertTrue(any(depsFlag(envRequirements()) in c for c in commands))

    def test_models_package_install_is_idempotent(self):
        """`scipion installb deepemhancerModels` into a scratch EM_ROOT, twice: the second run skips."""
        if shutil.which("scipion") is None:
            self.skipTest("the scipion launcher (scipion-app) is not on PATH")
        emRoot = tempfile.mkdtemp(prefix="dh-emroot-")
        try:
            env = dict(os.environ, EM_ROOT=emRoot)
            runs = [subprocess.run(["scipion", "installb", MODELS_PACKAGE], env=env, capture_output=True, text=True,
                                   cwd=emRoot) for _ in range(2)]
            for run in runs:
                self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            folder = os.path.join(emRoot, "%s-%s" % (MODELS_PACKAGE, ENGINE_VERSION))
            for flag in (FLAG_SHIPPED_MODELS, FLAG_OFFICIAL_MODELS):
                self.assertTrue(os.path.exists(os.path.join(folder, flag)))
            shipped = sorted(f for f in os.listdir(os.path.join(enginePackageDir(), "models"))
                             if f.endswith((".weights.h5", ".json", ".md")))
            self.assertEqual(sorted(f for f in os.listdir(folder) if f.endswith((".weights.h5", ".json", ".md"))),
                             shipped)
            self.assertIn("touch %s" % FLAG_SHIPPED_MODELS, runs[0].stdout)
            self.assertNotIn("touch %s" % FLAG_SHIPPED_MODELS, runs[1].stdout.replace("Skipping command", ""))
        finally:
            shutil.rmtree(emRoot)

    # ------------------------------------------------------------------ the installed managed env
    @unittest.skipUnless(os.environ.get("DEEPEMHANCER_TEST_ENV", "1") == "1", "DEEPEMHANCER_TEST_ENV=0")
    def test_managed_env_runs_engine(self):
        self.assertTrue(Plugin.isEnvInstalled(), "run `%s` (or `make install`) first" % Plugin.getInstallCommand())
        from . import runInEngineEnv
        out = runInEngineEnv("python -c \"import openvino, deepemhancer, deepemhancer.devices as d, sys; "
                             "print(d.configure('-1', 'auto')[0], deepemhancer.__version__, sys.prefix)\"")
        runtime, version, prefix = out.split()
        self.assertEqual(runtime, "openvino")  # the CPU default of the lean env
        self.assertEqual(version, ENGINE_VERSION)
        self.assertNotEqual(os.path.realpath(prefix), os.path.realpath(sys.prefix), "engine ran in Scipion's python")
        self.assertEqual(Plugin.validateInstallation(), [])   # the quick self-check in the managed env
        help_ = runInEngineEnv("python -m deepemhancer --help")
        for flag in ("--noiseStats", "--deepLearningModelPath", "--cleaningStrengh", "--tiling", "-i2"):
            self.assertIn(flag, help_)

    @unittest.skipUnless(os.environ.get("DEEPEMHANCER_TEST_ENV", "1") == "1", "DEEPEMHANCER_TEST_ENV=0")
    def test_validate_installation_reports_a_broken_models_folder(self):
        """A models folder whose weights file was removed: validateInstallation names it, with the fix."""
        folder = tempfile.mkdtemp(prefix="deepemhancer_broken_models_")
        saved = Plugin._vars[DEEPEMHANCER_MODELS]
        try:
            shipped = os.path.join(enginePackageDir(), "models")
            shutil.copy(os.path.join(shipped, "deepemhancer_wideTarget.json"), folder)  # no weights beside it
            Plugin._vars[DEEPEMHANCER_MODELS] = folder
            problems = Plugin.validateInstallation()
            self.assertEqual(len(problems), 1, problems)
            self.assertIn("model wideTarget", problems[0])
            self.assertIn("fix: scipion3 installb deepemhancerModels", problems[0])
        finally:
            Plugin._vars[DEEPEMHANCER_MODELS] = saved
            shutil.rmtree(folder)
