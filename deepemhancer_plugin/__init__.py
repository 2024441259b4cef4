# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Scipion 3 plugin for DeepEMhancer-style deep-learning post-processing of cryo-EM maps.

The plugin never imports TensorFlow, Keras or the engine's numerics: ``scipion3 installb deepemhancer`` creates a
managed environment (a conda env when Scipion has CONDA_ACTIVATION_CMD, else a venv under EM_ROOT) holding the engine
and its Keras stack, and the protocol runs ``python -m deepemhancer`` inside it.
"""

import os
import shlex
import subprocess
import sys

import pwem
import pyworkflow as pw
import pyworkflow.utils as pwutils

from .constants import (DEEPEMHANCER_BACKEND, DEEPEMHANCER_ENV_ACTIVATION, DEEPEMHANCER_HOME,
                        DEEPEMHANCER_KERAS_BACKEND, DEEPEMHANCER_MODELS, DEFAULT_BACKEND, DEFAULT_KERAS_BACKEND,
                        ENGINE_MODELS_ENV, ENGINE_PACKAGE, ENGINE_VERSION, ENV_NAME, FLAG_ENGINE,
                        FLAG_ENV, FLAG_OFFICIAL_MODELS, FLAG_SHIPPED_MODELS, MODELS_FOLDER, MODELS_PACKAGE,
                        OFFICIAL_MODELS_FOLDER, PYTHON_VERSION, VENV_FOLDER, depsFlag, enginePackageDir,
                        envRequirements)

__version__ = ENGINE_VERSION
_logo = ""
_references = ["SanchezGarcia2021"]


class Plugin(pwem.Plugin):
    _homeVar = DEEPEMHANCER_HOME
    _pathVars = [DEEPEMHANCER_HOME]
    _supportedVersions = [ENGINE_VERSION]
    _url = "https://github.com/rsanchezgarc/deepEMhancer"

    # ------------------------------------------------------------------ variables
    @classmethod
    def _defineVariables(cls):
        cls._defineEmVar(DEEPEMHANCER_HOME, ENV_NAME,
                         description="Folder of the managed environment (flag files; the venv when not using conda)")
        cls._defineEmVar(DEEPEMHANCER_MODELS, MODELS_FOLDER,
                         description="Folder with the DeepEMhancer models (deepemhancer_<kind>.weights.h5 + .json)")
        cls._defineVar(DEEPEMHANCER_ENV_ACTIVATION, cls._defaultActivation(),
                       description="Shell command that activates the managed environment")
        cls._defineVar(DEEPEMHANCER_BACKEND, DEFAULT_BACKEND,
                       description="Runtime of the network (engine --backend): auto (OpenVINO on the CPU, Keras on "
                                   "GPUs), openvino, torch or tensorflow")
        cls._defineVar(DEEPEMHANCER_KERAS_BACKEND, DEFAULT_KERAS_BACKEND,
                       description="Keras backend where Keras runs the network (GPUs, official checkpoints): torch "
                                   "or tensorflow")

    @classmethod
    def usesConda(cls):
        """Conda when Scipion is configured with CONDA_ACTIVATION_CMD (the Scipion convention), else a venv."""
        return bool((pw.Config.CONDA_ACTIVATION_CMD or "").strip())

    @classmethod
    def _defaultActivation(cls):
        if cls.usesConda():
            return "conda activate %s" % ENV_NAME
        return ". %s" % shlex.quote(cls.getHome(VENV_FOLDER, "bin", "activate"))

    @classmethod
    def _installActivation(cls, conda, relative=False):
        """Activation used by the install commands (relative: from inside the env's home, their cwd)."""
        if conda:
            return "%s conda activate %s" % (cls.getCondaActivationCmd(), ENV_NAME)
        if relative:
            return ". ./%s/bin/activate" % VENV_FOLDER
        return ". %s" % shlex.quote(cls.getHome(VENV_FOLDER, "bin", "activate"))

    # ------------------------------------------------------------------ running
    @classmethod
    def getActivationCmd(cls):
        """Full activation line for /bin/sh: conda initialisation (if any) then the env activation."""
        activation = cls.getVar(DEEPEMHANCER_ENV_ACTIVATION)
        if activation.startswith("conda "):
            return "%s %s" % (cls.getCondaActivationCmd(), activation)
        return activation

    @classmethod
    def getProgram(cls):
        """Command that runs the engine's command line inside the managed environment."""
        return "%s && python -m %s" % (cls.getActivationCmd(), ENGINE_PACKAGE)

    @classmethod
    def getEnviron(cls):
        environ = pwutils.Environ(os.environ)
        # Scipion's python paths must not leak into the engine's interpreter.
        for var in ("PYTHONPATH", "PYTHONHOME"):
            environ.pop(var, None)
        environ.update({
            ENGINE_MODELS_ENV: cls.getModelsDir(),
            "KERAS_BACKEND": cls.getVar(DEEPEMHANCER_KERAS_BACKEND) or DEFAULT_KERAS_BACKEND,
            DEEPEMHANCER_BACKEND: cls.getVar(DEEPEMHANCER_BACKEND) or DEFAULT_BACKEND,  # the engine's --backend
            "TF_FORCE_GPU_ALLOW_GROWTH": "true",   # share the GPU with other steps instead of grabbing it all
            "TF_CPP_MIN_LOG_LEVEL": "2",
        })
        return environ

    @classmethod
    def getModelsDir(cls, *paths):
        return os.path.join(cls.getVar(DEEPEMHANCER_MODELS), *paths)

    @classmethod
    def isEnvInstalled(cls):
        return os.path.exists(cls.getHome(FLAG_ENGINE))

    @classmethod
    def getInstallCommand(cls, package=ENGINE_PACKAGE):
        return "scipion3 installb %s" % package

    @classmethod
    def validateInstallation(cls):
        """Scipion's path check, then the engine's quick self-check in the managed env (versions, runtime, models
        with their checksums): one line per problem, each with its fix."""
        errors = super().validateInstallation()
        if errors or not cls.isEnvInstalled():
            return errors
        return cls.selfCheckProblems(quick=True)

    _selfCheckCache = {}

    @classmethod
    def selfCheckProblems(cls, quick=True, gpuIds="-1"):
        """The PROBLEM lines of `deepemhancer --selfcheck` run in the managed env; cached while the env's flag file
        and the models folder are unchanged (the Scipion GUI validates often)."""
        stamps = tuple(os.path.getmtime(p) if os.path.exists(p) else 0
                       for p in (cls.getHome(FLAG_ENGINE), cls.getModelsDir()))
        key = (quick, gpuIds, stamps)
        if key not in cls._selfCheckCache:
            command = "%s --selfcheck -g %s%s" % (cls.getProgram(), gpuIds, " --quick" if quick else "")
            try:
                proc = subprocess.run(["/bin/sh", "-c", command], env=cls.getEnviron(), capture_output=True,
                                      text=True, timeout=300)
            except subprocess.TimeoutExpired:
                return ["deepemhancer --selfcheck did not finish in 300 s; run it by hand: %s" % command]
            problems = ["DeepEMhancer self-check: %s" % line.strip()[len("PROBLEM"):].strip()
                        for line in proc.stdout.splitlines() if line.strip().startswith("PROBLEM")]
            if proc.returncode not in (0, 2) or (proc.returncode == 2 and not problems):
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
                problems.append("deepemhancer --selfcheck failed (exit %d): %s. Reinstall the environment: %s"
                                % (proc.returncode, tail[0], cls.getInstallCommand(ENGINE_PACKAGE)))
            cls._selfCheckCache[key] = problems
        return list(cls._selfCheckCache[key])

    @classmethod
    def getDependencies(cls):
        return [] if cls.usesConda() else ["python3"]

    # ------------------------------------------------------------------ installing
    @classmethod
    def defineBinaries(cls, env):
        env.addPackage(ENGINE_PACKAGE, version=ENGINE_VERSION, tar="void.tgz",
                       commands=cls.getEnvInstallCommands(), neededProgs=cls.getDependencies(), default=True)
        env.addPackage(MODELS_PACKAGE, version=ENGINE_VERSION, tar="void.tgz",
                       commands=cls.getModelsInstallCommands(), default=True)

    @classmethod
    def getEnvInstallCommands(cls, conda=None):
        """(command, target) pairs that build the managed env in $EM_ROOT/deepemhancer-<version> (the cwd).

        Each command runs under /bin/sh and ends by touching its flag file, so a re-run skips finished steps.
        """
        conda = cls.usesConda() if conda is None else conda
        if conda:
            create = "%s conda create -y -n %s python=%s" % (cls.getCondaActivationCmd(), ENV_NAME, PYTHON_VERSION)
        else:
            # Scipion's own python (>= 3.10) makes the venv; DEEPEMHANCER_VENV_PYTHON picks another interpreter.
            python = os.environ.get("DEEPEMHANCER_VENV_PYTHON", sys.executable)
            create = "%s -m venv --clear %s" % (shlex.quote(python), VENV_FOLDER)
        activate = cls._installActivation(conda, relative=True)
        requirements = envRequirements()
        flagDeps = depsFlag(requirements)
        return [
            ("%s && touch %s" % (create, FLAG_ENV), FLAG_ENV),
            ("%s && python -m pip install %s && touch %s"
             % (activate, " ".join(shlex.quote(r) for r in requirements), flagDeps), flagDeps),
            ("%s && %s && touch %s" % (activate, cls._engineInstallCmd(), FLAG_ENGINE), FLAG_ENGINE),
        ]

    @classmethod
    def _engineInstallCmd(cls, packageDir=None):
        """Put the engine package from this plugin's installation into the active env.

        From a source checkout (setup.py next to the package; `installp --devel`, `pip install -e`) the env gets an
        editable install, so it follows the sources. From an installed wheel the package folder is copied into the
        env's site-packages.
        """
        packageDir = packageDir or enginePackageDir()
        sourceRoot = os.path.dirname(packageDir)
        if os.path.exists(os.path.join(sourceRoot, "setup.py")):
            return "python -m pip install --no-deps -e %s" % shlex.quote(sourceRoot)
        return ('SITE=$(python -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])") && '
                'rm -rf "$SITE/%s" && cp -r %s "$SITE/%s" && '
                'find "$SITE/%s" -name __pycache__ -prune -exec rm -rf {} +'
                % (ENGINE_PACKAGE, shlex.quote(packageDir), ENGINE_PACKAGE, ENGINE_PACKAGE))

    @classmethod
    def getModelsInstallCommands(cls, conda=None):
        """(command, target) pairs that fill $EM_ROOT/deepemhancerModels-<version> (the cwd)."""
        shipped = shlex.quote(os.path.join(enginePackageDir(), "models"))
        copy = ('for f in %s/*.weights.h5 %s/*.json %s/*.md; do if [ -e "$f" ]; then cp -p "$f" .; fi; done'
                % (shipped, shipped, shipped))
        # Official checkpoints only where the network is reachable; offline installs keep the shipped models.
        online = ('python -c "import urllib.request as u; u.urlopen(\'https://zenodo.org\', timeout=10)"'
                  ' >/dev/null 2>&1')
        conda = cls.usesConda() if conda is None else conda
        download = ('(%s && if %s; then python -m %s --download %s/%s || echo "WARNING: download of the official '
                    'checkpoints failed"; else echo "Offline: skipping the official checkpoints"; fi)'
                    % (cls._installActivation(conda), online, ENGINE_PACKAGE, "$PWD", OFFICIAL_MODELS_FOLDER))
        return [
            ("%s && touch %s" % (copy, FLAG_SHIPPED_MODELS), FLAG_SHIPPED_MODELS),
            ("%s; touch %s" % (download, FLAG_OFFICIAL_MODELS), FLAG_OFFICIAL_MODELS),
        ]
