"""Packaging: everything is in setup.cfg except the packages list, which names one mapping that
setup.cfg cannot express.

The default model lives in the checkout's trained_models/ (the one place to replace it: the
.keras file and its .json card). Every build maps that folder into the package as
`screener/trained_models/`, so `pip install .`, a wheel and `pip install git+...` all carry it
(`screener.scoring.default_model_path` looks there, and in the checkout for editable installs).
screener's folders of data (no code) are packages of their own too: setuptools warns about a
folder it installs that the packages list does not name. `training/` is not installed: it is a
developer's tool (`python -m training.train` from a checkout), and a top-level package named
`training` in site-packages would clash with other projects'.
"""
import warnings

from setuptools import find_packages, setup

# setuptools' notice on every editable install of a flat layout (a folder named like the package
# in the current directory may shadow it), which pip >= 25 prints as a warning: here that folder
# is the installed package itself, so the notice says nothing (issue 28).
warnings.filterwarnings("ignore", r"Editable installation\.")

DATA = ["screener.assets", "screener.models", "screener.templates", "screener.trained_models"]

setup(packages=find_packages(include=["screener", "screener.*"]) + DATA,
      package_dir={"screener.trained_models": "trained_models"})
