"""Package discovery, the one thing pyproject.toml cannot say: every package under keras_itl/, plus
the design card's top-level cli/ and serving/ folders installed as keras_itl.cli and
keras_itl.serving. Found automatically, so a new subpackage can never be left out of the wheel;
all other metadata lives in pyproject.toml.
"""
from setuptools import find_packages, setup

MAPPED_FOLDERS = {"keras_itl.cli": "cli", "keras_itl.serving": "serving"}

packages = find_packages(include=["keras_itl", "keras_itl.*"])
for package, folder in MAPPED_FOLDERS.items():
    packages += [package, *(f"{package}.{sub}" for sub in find_packages(folder))]

setup(packages=packages, package_dir=MAPPED_FOLDERS)
