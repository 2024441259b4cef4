# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""Names shared by the Plugin class, the protocol, the viewer and the tests."""

import hashlib
import os
import re
from importlib import metadata, util

PLUGIN_NAME = "deepemhancer_plugin"
DIST_NAME = "scipion-em-deepemhancer"

# ---- Binary packages (scipion3 installb <name>) ----
ENGINE_PACKAGE = "deepemhancer"
MODELS_PACKAGE = "deepemhancerModels"


def readEngineVersion():
    """Version of the bundled engine, read without importing Keras or the engine's numerics.

    The package ``deepemhancer`` sits next to this plugin in the same distribution; its ``__init__.py`` text holds
    ``__version__``. Falls back to the installed distribution's metadata.
    """
    spec = util.find_spec(ENGINE_PACKAGE)
    if spec is not None and spec.origin and os.path.exists(spec.origin):
        with open(spec.origin) as f:
            match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
        if match:
            return match.group(1)
    return metadata.version(DIST_NAME)


def enginePackageDir():
    """Folder of the engine package ``deepemhancer`` as installed with this plugin."""
    spec = util.find_spec(ENGINE_PACKAGE)
    if spec is None or not spec.origin:
        raise ImportError("The engine package 'deepemhancer' is not importable; reinstall %s." % DIST_NAME)
    return os.path.dirname(os.path.abspath(spec.origin))


ENGINE_VERSION = readEngineVersion()
ENV_NAME = "%s-%s" % (ENGINE_PACKAGE, ENGINE_VERSION)   # conda env name and $EM_ROOT folder
MODELS_FOLDER = "%s-%s" % (MODELS_PACKAGE, ENGINE_VERSION)
PYTHON_VERSION = "3.11"                                  # python of a conda env (a venv uses Scipion's python)

# What the managed environment always gets: the engine's requirements and OpenVINO, the CPU runtime (it runs the
# shipped networks 3x faster than Keras on torch, without torch or TensorFlow: a lean env, see README).
ENGINE_REQUIREMENTS = ["numpy>=1.24", "scipy>=1.10", "mrcfile>=1.4", "keras>=3.5", "h5py>=3.8", "tqdm>=4.60",
                       "gemmi>=0.6", "matplotlib>=3.5",  # --protectModel and deepemhancer-eval (models, report)
                       "openvino>=2025.0"]
# Keras backends, added for GPUs, official .hd5 checkpoints and training (install-time variable
# DEEPEMHANCER_KERAS_BACKENDS: a comma list of these names, or "none"; default torch on a host with an NVIDIA GPU,
# none on a CPU-only host). torch from PyPI is the CUDA build on Linux.
KERAS_BACKEND_REQUIREMENTS = {"torch": ["torch==2.13.0"], "tensorflow": ["tensorflow>=2.16"]}
INSTALL_BACKENDS_VAR = "DEEPEMHANCER_KERAS_BACKENDS"
DEFAULT_KERAS_BACKEND = "torch"   # the Keras backend when Keras runs the network (GPUs): torch


def hostHasNvidiaGpu():
    """An NVIDIA GPU is visible to this process (the host that installs or runs a step, also on a queue)."""
    gpus = "/proc/driver/nvidia/gpus"
    return os.path.isdir(gpus) and bool(os.listdir(gpus))


def installKerasBackends(environ=os.environ):
    """Keras backends the install hook puts into the managed env (see KERAS_BACKEND_REQUIREMENTS)."""
    text = environ.get(INSTALL_BACKENDS_VAR)
    if text is None:
        return [DEFAULT_KERAS_BACKEND] if hostHasNvidiaGpu() else []
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in KERAS_BACKEND_REQUIREMENTS]
    if unknown:
        raise ValueError("%s=%s: unknown backend %s; use a comma list of %s, or none"
                         % (INSTALL_BACKENDS_VAR, text, ", ".join(unknown), ", ".join(KERAS_BACKEND_REQUIREMENTS)))
    return names


def envRequirements(environ=os.environ):
    """Everything pip installs into the managed env."""
    extra = [r for name in installKerasBackends(environ) for r in KERAS_BACKEND_REQUIREMENTS[name]]
    return ENGINE_REQUIREMENTS + extra


# Flag files, relative to the package folders, that mark finished install commands.
FLAG_ENV = "env-created.txt"


def depsFlag(requirements):
    """The requirements flag names their hash: `scipion installb` installs what a newer plugin (or another choice
    of backends) adds to them."""
    return "requirements-installed-%s.txt" % hashlib.sha1(" ".join(requirements).encode()).hexdigest()[:8]


FLAG_ENGINE = "engine-installed.txt"
FLAG_SHIPPED_MODELS = "shipped-models-installed.txt"
FLAG_OFFICIAL_MODELS = "official-models-checked.txt"
VENV_FOLDER = "venv"
OFFICIAL_MODELS_FOLDER = "official"

# ---- Plugin variables (one dict for all plugins: every name carries the prefix) ----
DEEPEMHANCER_HOME = "DEEPEMHANCER_HOME"                    # $EM_ROOT/deepemhancer-<version>
DEEPEMHANCER_ENV_ACTIVATION = "DEEPEMHANCER_ENV_ACTIVATION"  # shell command that activates the managed env
DEEPEMHANCER_MODELS = "DEEPEMHANCER_MODELS"                # $EM_ROOT/deepemhancerModels-<version>
DEEPEMHANCER_KERAS_BACKEND = "DEEPEMHANCER_KERAS_BACKEND"  # torch | tensorflow: Keras's backend where Keras runs
DEEPEMHANCER_BACKEND = "DEEPEMHANCER_BACKEND"              # the engine's --backend: auto | openvino | torch | ...
DEFAULT_BACKEND = "auto"                                   # OpenVINO on the CPU, Keras on GPUs
# Variables the engine itself reads.
ENGINE_MODELS_ENV = "DEEPEMHANCER_MODELS_DIR"

# ---- Models ----
MODEL_KINDS = ("tightTarget", "wideTarget", "highRes")
MASKED_KIND = "masked"


def modelWeightsName(kind):
    return "deepemhancer_%s.weights.h5" % kind


def modelMetadataName(kind):
    return "deepemhancer_%s.json" % kind


# ---- Protocol choices (indices of EnumParams; never compare against bare numbers) ----
INPUT_VOLUME, INPUT_ATTACHED_HALVES, INPUT_SEPARATE_HALVES = 0, 1, 2
INPUT_CHOICES = ["Volume", "Volume with attached half maps", "Two half-map volumes"]

NORM_AUTO, NORM_STATS, NORM_MASK = 0, 1, 2
NORM_CHOICES = ["Automatic", "Noise statistics", "Binary mask"]

MODEL_TIGHT, MODEL_WIDE, MODEL_HIGHRES, MODEL_CUSTOM = 0, 1, 2, 3
MODEL_CHOICES = ["tightTarget", "wideTarget", "highRes", "Custom model file"]

TILING_FAST, TILING_ORIGINAL = 0, 1
TILING_CHOICES = ["fast", "original"]
