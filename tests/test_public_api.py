"""The package's own namespace offers the entry points a Python user needs, without paying for TensorFlow."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import subprocess
import sys

import pytest

import keras_itl

ENTRY_POINTS = [name for name in keras_itl.__all__ if name != "__version__"]
SECTION = re.compile(r"^(Args|Attributes|Returns|Raises):$")
ENTRY = re.compile(r"^ {4}(\w+)( \(.*\))?:")  # a documented name: four spaces in, then "name:" or "name (type):"


def docstring_sections(obj) -> dict[str, list[str]]:
    """The Google-style sections of ``obj``'s docstring: title -> its lines (indented as written)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in (inspect.getdoc(obj) or "").splitlines():
        if SECTION.match(line):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and line and not line.startswith(" "):
            current = None  # prose after the sections ends the last one
        elif current is not None:
            current.append(line)
    return sections


def documented_names(lines: list[str]) -> list[str]:
    return [match.group(1) for line in lines if (match := ENTRY.match(line))]


@pytest.mark.parametrize("name", ENTRY_POINTS)
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


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_each_entry_point_documents_its_parameters_and_result(name):
    obj = getattr(keras_itl, name)
    sections = docstring_sections(obj)
    if dataclasses.is_dataclass(obj):
        fields = [field.name for field in dataclasses.fields(obj)]
        assert sorted(documented_names(sections.get("Attributes", []))) == sorted(fields), \
            f"{name}'s Attributes section must document exactly its fields"
        return
    parameters = list(inspect.signature(obj).parameters)
    if parameters:
        assert sorted(documented_names(sections.get("Args", []))) == sorted(parameters), \
            f"{name}'s Args section must document exactly its parameters"
    assert any(line.strip() for line in sections.get("Returns", [])), f"{name} needs a Returns section"
