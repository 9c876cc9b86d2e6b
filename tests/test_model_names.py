"""One model-name rule: the exporter, the server and every command accept and refuse the same names."""
from __future__ import annotations

from pathlib import Path

import keras
import pytest
from click.testing import CliRunner

from keras_itl.cli.main import main
from keras_itl.errors import UserError
from keras_itl.export import export_model
from keras_itl.serving.model_config import load_model_config_file, single_model

GOOD_NAMES = ["digits", "my_model", "resnet50-v2", "model.v1.2", "A", "_", "-lead", ".hidden", "x" * 200]
BAD_NAMES = ["my model", "", ".", "..", "a..b", "a/b", "../evil", "a\\b", "digits\n", "tab\tname", "modèle",
             "x:y", "a?b", "a%2Fb", "név", "a#b"]
# What a refused name's one-line error says: the rule itself, so the user can pick a name that works.
RULE = "use only letters, digits, '_', '-' and '.', with no '..' and not '.' alone"


@pytest.fixture(scope="module")
def tiny_model() -> keras.Model:
    """Any two-class model: the exporter checks the name before it looks at the model's classes."""
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])


def _export_command_accepts(name: str, tmp_path) -> bool:
    """Whether ``keras-itl export --name`` passes the name check (it then fails on the missing model)."""
    result = CliRunner().invoke(main, ["export", "--model", str(tmp_path / "missing.keras"), "--name", name,
                                       "--base-path", str(tmp_path / "saved")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "invalid model name" in result.output or "no model at" in result.output, result.output
    return "no model at" in result.output


def _export_model_accepts(model: keras.Model, base, name: str) -> bool:
    """Whether export_model takes ``base/name`` (it then refuses the deliberately empty class list)."""
    try:
        export_model(model, base / name, class_names=[], metadata={})
    except UserError as error:
        if str(error).startswith("invalid model name"):
            return False
        assert "class names were given" in str(error), error
        return True
    raise AssertionError("export_model accepted an empty class list")


def _server_accepts(base, name: str) -> bool:
    """Whether ``serve --model-name`` and a models.config entry both take the name (they must agree)."""
    verdicts = []
    config = base / "models.config"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    config.write_text(f'model_config_list {{ config {{ name: "{escaped}" base_path: "{base}" }} }}', encoding="utf-8")
    for read in (lambda: single_model(name, base), lambda: load_model_config_file(config)):
        try:
            (served,) = read()
        except UserError as error:
            assert str(error).startswith("invalid model name"), error
            verdicts.append(False)
        else:
            assert served.name == name
            verdicts.append(True)
    assert verdicts[0] == verdicts[1], verdicts
    return verdicts[0]


@pytest.mark.parametrize("name,good", [(n, True) for n in GOOD_NAMES] + [(n, False) for n in BAD_NAMES])
def test_exporter_and_server_accept_exactly_the_same_names(tiny_model, tmp_path, name, good):
    assert _export_command_accepts(name, tmp_path) is good
    if name and Path(name).name == name:  # a name that stays one path component once joined to the base path
        assert _export_model_accepts(tiny_model, tmp_path, name) is good
    assert _server_accepts(tmp_path, name) is good


def _error_line(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("name", ["my model", "a..b", "x:y"])
def test_every_command_refuses_a_bad_name_with_the_same_one_line_error(tiny_model, tmp_path, name):
    tiny_model.save(tmp_path / "tiny.keras")
    expected = f"Error: invalid model name {name!r}: {RULE}"
    assert _error_line("train", "--target", "digits", "--epochs", 1, "--image-size", 8, "--max-train-examples", 40,
                       "--quiet", "--output", tmp_path / "run", "--export", name,
                       "--export-base", tmp_path / "saved") == expected  # kept tiny in case the name got through
    assert _error_line("export", "--model", tmp_path / "tiny.keras", "--name", name,
                       "--base-path", tmp_path / "saved") == expected
    assert _error_line("push", "--model", tmp_path / "tiny.keras", "--serving-dir", tmp_path / "saved" / name,
                       "--force") == expected
    assert _error_line("serve", "--model-base-path", tmp_path, "--model-name", name) == expected
    assert not (tmp_path / "saved").exists() and not (tmp_path / "run").exists()
