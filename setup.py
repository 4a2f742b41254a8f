"""Packaging: everything is in setup.cfg except one mapping that setup.cfg cannot express.

The default model lives in the checkout's trained_models/ (the one place to replace it: the
.keras file and its .json card). Every build maps that folder into the package as
`screener/trained_models/`, so `pip install .`, a wheel and `pip install git+...` all carry it
(`screener.scoring.default_model_path` looks there, and in the checkout for editable installs).
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["screener", "screener.*", "training", "training.*"])
      + ["screener.trained_models"],
      package_dir={"screener.trained_models": "trained_models"})
