"""Finding plug-ins: every module of a package imported once, so each registers what it declares.

Methods (``keras_itl.methods``) and selection rankers (``keras_itl.selection.rankers``) are found this
way: adding one is adding a file to its package.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache


@cache
def import_plugins(package: str) -> None:
    """Import every module of ``package`` (once per process: the registries keep what they registered)."""
    path = importlib.import_module(package).__path__
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
