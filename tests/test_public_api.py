"""The package's own namespace offers the entry points a Python user needs, without paying for TensorFlow."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import keras_itl


@pytest.mark.parametrize("name", [name for name in keras_itl.__all__ if name != "__version__"])
def test_each_entry_point_is_the_library_object(name):
    module = importlib.import_module(keras_itl._ENTRY_POINTS[name])
    assert getattr(keras_itl, name) is getattr(module, name)


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        keras_itl.nothing_here  # noqa: B018


def test_importing_the_package_does_not_import_tensorflow():
    code = "import sys, keras_itl; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
