"""Every ``--option`` that a message of the library names is an option the CLI really has.

Error messages and hints tell users which option to pass; a hint naming an option that does not
exist (or no longer exists) sends them nowhere.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from keras_itl.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
# Options of other programs that messages quote in full commands a user can copy.
FOREIGN_OPTIONS = {"--data_dir"}  # `tfds build NAME --data_dir DIR`
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")


def _cli_options(command: click.Command) -> set[str]:
    options = {"--help"}  # click adds it to every command outside ``params``
    options |= {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for sub in getattr(command, "commands", {}).values():
        options |= _cli_options(sub)
    return options


def _named_options() -> dict[str, list[str]]:
    """``--option`` -> places in the library's and server's source text (string literals) that name it."""
    found: dict[str, list[str]] = {}
    for folder in ("keras_itl", "cli", "serving"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    for option in _OPTION.findall(node.value):
                        found.setdefault(option, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_scan_sees_the_options_messages_name():
    named = _named_options()
    assert "--weights" in named and "--data-dir" in named  # the offline hints name both


def test_every_option_a_message_names_exists():
    cli = _cli_options(main) | FOREIGN_OPTIONS
    missing = {option: places for option, places in _named_options().items() if option not in cli}
    assert not missing, f"messages name options the CLI does not have: {missing}"
