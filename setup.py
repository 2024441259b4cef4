"""scipion-em-deepemhancer: the DeepEMhancer engine (package ``deepemhancer``) and its Scipion 3 plugin
(package ``deepemhancer_plugin``) in one distribution.

Installing the distribution pulls no deep-learning framework: the Scipion side only needs pyworkflow/pwem
(extra ``scipion``), and the engine's stack (extra ``engine``) lives in the managed environment that the plugin's
install hook creates.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))


def read_version():
    with open(os.path.join(HERE, "deepemhancer", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def read(name):
    path = os.path.join(HERE, name)
    return open(path).read() if os.path.exists(path) else ""


ENGINE_REQUIRES = ["numpy>=1.24", "scipy>=1.10", "mrcfile>=1.4", "keras>=3.5", "h5py>=3.8", "tqdm>=4.60",
                   "openvino>=2025.0"]  # the CPU runtime; a Keras backend (extras torch, tensorflow) for GPUs

setup(
    name="scipion-em-deepemhancer",
    version=read_version(),
    description="DeepEMhancer-style deep-learning post-processing of cryo-EM maps: engine and Scipion 3 plugin",
    long_description=read("README.rst"),
    long_description_content_type="text/x-rst",
    license="GPL-3.0-or-later",
    python_requires=">=3.10",
    packages=find_packages(include=["deepemhancer", "deepemhancer.*", "deepemhancer_plugin",
                                    "deepemhancer_plugin.*"]),
    include_package_data=True,
    package_data={
        "deepemhancer": ["models/*.json", "models/*.weights.h5", "models/*.md"],
        "deepemhancer_plugin": ["protocols.conf", "templates/*.json.template", "tests/data/*", "example/*", "*.png"],
    },
    install_requires=[],
    extras_require={
        "scipion": ["scipion-pyworkflow>=3.11", "scipion-em>=3.11"],
        "engine": ENGINE_REQUIRES,
        "tensorflow": ENGINE_REQUIRES + ["tensorflow-cpu>=2.16"],
        "torch": ENGINE_REQUIRES + ["torch>=2.1"],
        "eval": ["gemmi>=0.6", "matplotlib>=3.5"],
        "test": ["pytest>=7", "tf_keras"],
    },
    entry_points={
        "pyworkflow.plugin": ["deepemhancer_plugin = deepemhancer_plugin"],
        "console_scripts": [
            "deepemhancer = deepemhancer.cli:main",
            "deepemhancer-train = deepemhancer.training.cli:main",
            "deepemhancer-eval = deepemhancer.evaluation.cli:main",
        ],
    },
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Bio-Informatics",
                 "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)"],
)
