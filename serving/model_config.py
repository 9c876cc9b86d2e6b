"""Which models the server serves: from command-line options or a TF Serving text ModelServerConfig.

Only the fields the server acts on are read: name, base_path, model_version_policy (latest / all /
specific) and version_labels. Model names become URL and path components, so names breaking the exporter's
rule (``keras_itl.serving_layout.validate_model_name``) are refused here, before anything touches the disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from keras_itl.errors import UserError
from keras_itl.serving_layout import validate_model_name


@dataclass(frozen=True)
class VersionPolicy:
    """Which on-disk versions to serve: the ``latest`` N, ``all``, or the ``specific`` listed ones."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def choose(self, candidates: list[int]) -> list[int]:
        """The versions to serve among ``candidates`` (complete, loadable versions on disk)."""
        ordered = sorted(candidates)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions:]


@dataclass(frozen=True)
class ModelConfig:
    """One served model: its name, the directory holding its integer version directories, policy, labels."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


def single_model(name: str, base_path: str | Path) -> list[ModelConfig]:
    """The configuration for ``--model-name``/``--model-base-path``: latest version of one model."""
    base = Path(base_path)
    if not base.is_dir():
        raise UserError(f"model base path {base} is not a directory")
    return [ModelConfig(validate_model_name(name), base.resolve())]


def _policy(config) -> VersionPolicy:
    choice = config.model_version_policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", versions=tuple(config.model_version_policy.specific.versions))
    num = config.model_version_policy.latest.num_versions if choice == "latest" else 0
    return VersionPolicy("latest", num_versions=num or 1)


def load_model_config_file(path: str | Path) -> list[ModelConfig]:
    """Parse a text-format ModelServerConfig; relative base paths are taken from the config file's folder."""
    path = Path(path)
    try:
        proto = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    except (OSError, text_format.ParseError) as error:
        raise UserError(f"cannot read model config {path}: {error}") from None
    if proto.WhichOneof("config") != "model_config_list" or not proto.model_config_list.config:
        raise UserError(f"model config {path} has no model_config_list entries")
    models = []
    for entry in proto.model_config_list.config:
        if entry.model_platform not in ("", "tensorflow"):
            raise UserError(f"model {entry.name!r}: only model_platform \"tensorflow\" is supported")
        base = Path(entry.base_path)
        base = base if base.is_absolute() else path.parent / base
        if not base.is_dir():
            raise UserError(f"model {entry.name!r}: base_path {base} is not a directory")
        models.append(ModelConfig(validate_model_name(entry.name), base.resolve(), _policy(entry),
                                  dict(entry.version_labels)))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise UserError(f"model config {path} names a model twice")
    return models
