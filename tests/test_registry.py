"""Every choice and default comes from keras_itl.registry: the CLI, the configs and the experiment agree.

The CLI is exercised for real (click parses the options and builds the TransferConfig); only
``run_transfer`` is replaced, by a recorder, so no training runs.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import shlex
from contextlib import contextmanager

import click
import pytest
from click.testing import CliRunner

import keras_itl.transfer
from keras_itl import registry
from keras_itl.experiment import experiment_configs, train_command
from keras_itl.influence import InfluenceConfig, SolverOptions
from keras_itl.inspection import inspect_influence
from keras_itl.methods import method_names
from keras_itl.options import OPTIONS, declared, flag_of, from_record
from keras_itl.presets import PRESETS, Preset
from keras_itl.selection import select_drops
from keras_itl.training import TrainConfig
from keras_itl.transfer import InstanceOptions, TransferConfig


class _Recorded:
    def summary(self) -> str:
        return "recorded"


@pytest.fixture
def recorded_configs(monkeypatch):
    """The TransferConfigs `keras-itl train` hands to run_transfer (which is not run)."""
    configs = []

    def record(config, output_dir, **kwargs):
        configs.append(config)
        return _Recorded()

    monkeypatch.setattr(keras_itl.transfer, "run_transfer", record)
    return configs


def _train(main, args: list[str], configs: list) -> TransferConfig:
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 0, result.output
    return configs.pop()


def _cli_main():
    from keras_itl.cli.main import main

    return main


def test_the_cli_defaults_build_the_library_defaults(recorded_configs, tmp_path):
    config = _train(_cli_main(), ["--target", "digits", "--source", "mnist-5k", "--output", str(tmp_path)],
                    recorded_configs)
    assert config == TransferConfig(target="digits", source="mnist-5k")
    config = _train(_cli_main(), ["--target", "digits", "--source", "mnist-5k", "--method", "instance",
                                  "--output", str(tmp_path)], recorded_configs)
    assert config.instance == InstanceOptions()


def _defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


BUDGET = {"epochs": "EPOCHS", "head_epochs": "HEAD_EPOCHS", "source_epochs": "SOURCE_EPOCHS",
          "batch_size": "BATCH_SIZE", "learning_rate": "LEARNING_RATE", "fine_tune_lr_factor": "FINE_TUNE_LR_FACTOR",
          "optimizer": "OPTIMIZER", "lr_schedule": "LR_SCHEDULE", "patience": "PATIENCE", "seed": "SEED",
          "val_fraction": "VAL_FRACTION", "label_noise": "LABEL_NOISE", "noise_kind": "NOISE_KIND", "arch": "ARCH"}
INSTANCE = {"policy": "POLICY", "scope": "SCOPE", "solver": "SOLVER", "damping": "DAMPING",
            "damping_retries": "DAMPING_RETRIES", "cg_max_iterations": "CG_MAX_ITERATIONS",
            "lissa_scale": "LISSA_SCALE", "lissa_depth": "LISSA_DEPTH", "max_drop_fraction": "MAX_DROP_FRACTION",
            "min_class_keep_fraction": "MIN_CLASS_KEEP_FRACTION", "start": "INSTANCE_START", "judge": "AUTO_JUDGE",
            "auto_margin": "AUTO_MARGIN", "auto_min_z": "AUTO_MIN_Z"}


@pytest.mark.parametrize("cls", [TransferConfig, Preset, TrainConfig, InstanceOptions, SolverOptions],
                         ids=lambda cls: cls.__name__)
def test_every_config_default_is_the_registry_default(cls):
    defaults = _defaults(cls)
    checked = {field: registry_name for field, registry_name in {**BUDGET, **INSTANCE}.items() if field in defaults}
    assert checked, f"{cls.__name__} shares no default with the registry"
    for field, registry_name in checked.items():
        assert defaults[field] == getattr(registry, registry_name), f"{cls.__name__}.{field}"


def _option(command: click.Command, name: str) -> click.Parameter:
    return next(param for param in command.params if param.name == name)


COMMAND_LOCAL = {"output", "resume", "export_name", "export_base", "quiet", "workers"}


def test_every_declared_option_is_a_train_flag_with_the_python_default_and_names_itself_on_resume():
    main = _cli_main()
    train = main.commands["train"]
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    python = TransferConfig(target="digits", source="mnist-5k", method="instance")
    declared_names = set()
    for path, declaration in declared(TransferConfig):
        declared_names.add(declaration.name)
        param = _option(train, declaration.name)
        assert param.opts == [declaration.flag] and f"{declaration.flag} " in help_text, path
        value = python
        for name in path.split("."):
            value = getattr(value, name)
        cli_default = None if declaration.zero_is_none and param.default == 0 else param.default
        if path == "method":  # None on both sides, resolved by the same rule (a source given: model)
            assert cli_default is None and TransferConfig(target="digits", source="mnist-5k").method == "model"
        elif path not in ("target", "source"):  # given above
            assert cli_default == value, path
        assert flag_of(path) == declaration.flag, path  # what a refused --resume names
    assert flag_of("instance.judge") == "--auto-judge" and flag_of("instance.solver.damping") == "--damping"
    for declaration in (option for option in OPTIONS.values() if option.method):  # the methods' own options
        declared_names.add(declaration.name)
        param = _option(train, declaration.name)
        assert param.opts == [declaration.flag] and param.default == declaration.default, declaration.name
        assert TransferConfig(target="digits", source="mnist-5k", method=declaration.method).method_options[
            declaration.name] == declaration.default
    assert {param.name for param in train.params} - declared_names == COMMAND_LOCAL  # nothing declared elsewhere


def test_the_influence_command_and_workflow_defaults_are_the_registry_defaults():
    command = _cli_main().commands["influence"]
    workflow = inspect.signature(inspect_influence).parameters
    for name, registry_name in {"scope": "SCOPE", "policy": "INSPECT_POLICY",
                                "max_drop_fraction": "MAX_DROP_FRACTION",
                                "min_class_keep_fraction": "MIN_CLASS_KEEP_FRACTION",
                                "batch_size": "INFLUENCE_BATCH_SIZE"}.items():
        expected = getattr(registry, registry_name)
        assert _option(command, name).default == expected, f"keras-itl influence --{name}"
        assert workflow[name].default == expected, f"inspect_influence({name}=...)"
    assert workflow["solver"].default == SolverOptions()  # each of its fields defaults to the registry's
    for name in ("solver", "damping", "damping_retries", "cg_max_iterations", "lissa_scale", "lissa_depth"):
        assert _option(command, name).default == getattr(registry, name.upper()) == getattr(SolverOptions(), name)
    assert InfluenceConfig().scope == registry.SCOPE and InfluenceConfig().batch_size == registry.INFLUENCE_BATCH_SIZE


def test_every_cli_choice_list_is_the_registry_list():
    main = _cli_main()
    train = main.commands["train"]
    for name, choices in {"arch": tuple(registry.ARCHITECTURES), "method": method_names(),
                          "optimizer": registry.OPTIMIZERS, "lr_schedule": registry.LR_SCHEDULES,
                          "noise_kind": registry.NOISE_KINDS, "judge": registry.AUTO_JUDGES,
                          "start": registry.INSTANCE_STARTS, "solver": registry.SOLVERS}.items():
        assert tuple(_option(train, name).type.choices) == choices, name
    assert tuple(_option(main.commands["evaluate"], "split").type.choices) == registry.EVALUATION_SPLITS


@contextmanager
def _registry_with(architecture: registry.Architecture):
    """The registry with one more architecture, as if written into registry.py, and the CLI declared again from it
    (as a fresh process would); both restored afterwards."""
    import keras_itl.cli.main
    import keras_itl.cli.options

    try:
        registry.ARCHITECTURES[architecture.name] = architecture
        importlib.reload(keras_itl.cli.options)
        yield importlib.reload(keras_itl.cli.main).main
    finally:
        del registry.ARCHITECTURES[architecture.name]
        importlib.reload(keras_itl.cli.options)
        importlib.reload(keras_itl.cli.main)


def test_an_arch_added_to_the_registry_is_accepted_by_the_cli(recorded_configs, tmp_path):
    args = ["--target", "digits", "--source", "mnist-5k", "--output", str(tmp_path)]
    assert CliRunner().invoke(_cli_main(), ["train", *args, "--arch", "tiny-net"]).exit_code == 2  # not yet
    tiny = registry.Architecture("tiny-net", 16, 8, needs_rgb=False, supports_imagenet=False)
    with _registry_with(tiny) as main:
        config = _train(main, [*args, "--arch", "tiny-net"], recorded_configs)
    assert config.arch == "tiny-net"
    assert "tiny-net" not in _option(_cli_main().commands["train"], "arch").type.choices  # restored


def _commands_for_every_preset():
    solver = SolverOptions(solver="lissa", hessian="exact", damping=0.5, damping_retries=1, cg_max_iterations=50,
                           lissa_scale=20.0, lissa_depth=10, lissa_batch_size=8)
    non_default = InstanceOptions(policy="fraction:0.1", scope="top:2", solver=solver, max_drop_fraction=0.3,
                                  min_class_keep_fraction=0.7, start="warmup", refit_epochs=2, judge="full",
                                  auto_margin=0.1, auto_min_z=1.5)
    for preset in PRESETS.values():
        yield from experiment_configs(preset, seeds=2)
    yield from experiment_configs(PRESETS["digits"], seeds=1,
                                  overrides={"instance": non_default, "patience": None, "optimizer": "sgd",
                                             "lr_schedule": "constant", "fine_tune_layers": 3, "val_fraction": 0.2,
                                             "data_dir": "/data"})


def test_every_rendered_train_command_builds_the_experiments_config(recorded_configs, tmp_path):
    for config in _commands_for_every_preset():
        words = shlex.split(train_command(config, tmp_path / "run"))
        assert words[:2] == ["keras-itl", "train"]
        assert _train(_cli_main(), words[2:], recorded_configs) == config, words


def test_auto_from_python_is_auto_from_the_cli():
    parameters = inspect.signature(select_drops).parameters
    train = _cli_main().commands["train"]
    for name in ("policy", "auto_margin", "auto_min_z", "max_drop_fraction", "min_class_keep_fraction"):
        assert parameters[name].default == _option(train, name).default, name


def test_a_config_comes_back_from_its_run_json_record():
    solver = SolverOptions(solver="lissa", damping=0.5)
    config = TransferConfig(target="digits", source="mnist-5k", method="instance",
                            instance=InstanceOptions(policy="margin:0.1", solver=solver))
    record = json.loads(json.dumps(dataclasses.asdict(config)))
    assert from_record(TransferConfig, record) == config
