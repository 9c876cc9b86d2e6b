"""The record of one ``keras-itl train`` run, ``run.json`` beside its model, typed.

``run_transfer`` writes it; ``evaluate`` and ``influence`` read the dataset options from it (so they
split the data as the run did), ``export`` reads the architecture, class names and metadata from it
and rebuilds the model to restore a checkpoint into, and the experiment reads its runs' records.
The JSON keys are the record's fields: ``config`` (the TransferConfig's fields), ``test``,
``phases``, ``dataset``, ``seconds``, ``files``, ``influence`` and ``fine_tuning``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from keras_itl import registry
from keras_itl.backbones import build_model, get_architecture, model_channels
from keras_itl.errors import UserError, one_line

RUN_FILE = "run.json"

# The TransferConfig fields that shape the data, passed to load_dataset when set (seed and
# val_fraction always are, defaulting to the registry's).
_DATA_OPTIONS = ("max_train_examples", "label_noise", "noise_kind")


@dataclass
class RunRecord:
    """What one run depends on and produced: its options, dataset, phases, test metrics, files, selection."""

    config: dict
    test: dict | None = None
    phases: list[dict] = field(default_factory=list)
    dataset: dict = field(default_factory=dict)
    seconds: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    influence: dict | None = None
    fine_tuning: dict | None = None  # the fine-tuning rate factor the run kept, and how it was chosen

    @property
    def arch(self) -> str:
        return self.config["arch"]

    @property
    def target(self) -> str | None:
        return self.config.get("target")

    @property
    def image_size(self) -> int:
        """The model's input side: the run's ``image_size``, else the architecture's default."""
        return self.config.get("image_size") or get_architecture(self.arch).default_image_size

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["class_names"])

    @property
    def dropped(self) -> int:
        """How many training instances the instance method dropped (0 for the other methods)."""
        return len(self.influence["selection"]["drop_ids"]) if self.influence else 0

    def dataset_options(self) -> dict:
        """``load_dataset`` options that give the run's own splits (seed, validation fraction, noise, ...)."""
        options = {"seed": self.config.get("seed", registry.SEED),
                   "val_fraction": self.config.get("val_fraction", registry.VAL_FRACTION),
                   "data_dir": self.config.get("data_dir")}
        options.update({key: self.config[key] for key in _DATA_OPTIONS if self.config.get(key)})
        if self.config.get("imbalance"):
            from keras_itl.datasets import parse_imbalance

            options["imbalance"] = parse_imbalance(self.config["imbalance"])
        return options

    def export_metadata(self) -> dict:
        """What a SavedModel exported from this run says about it (``assets.extra/keras_itl.json``)."""
        test = self.test or {}
        return {
            "architecture": self.arch, "source": self.config.get("source"), "target": self.target,
            "method": self.config["method"],
            "metrics": {"split": "test", **{key: test.get(key) for key in ("loss", "accuracy", "error_rate",
                                                                           "num_examples")}},
            "dropped_instances": self.dropped,
            "training_options": self.config,
        }

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, directory: str | os.PathLike) -> Path:
        """Write ``run.json`` into ``directory``; returns its path."""
        path = Path(directory) / RUN_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    @classmethod
    def read(cls, directory: str | os.PathLike) -> RunRecord | None:
        """The record in ``directory``, or None when it holds no ``run.json``."""
        path = Path(directory) / RUN_FILE
        if not path.is_file():
            return None
        fields = json.loads(path.read_text())
        return cls(**{key: value for key, value in fields.items() if key in cls.__dataclass_fields__})

    def build_model(self) -> keras.Model:
        """A fresh model of the run's architecture, input size, channels and class count."""
        return build_model(self.arch, self.dataset["num_classes"], image_size=self.image_size,
                           channels=model_channels(self.arch, self.dataset["image_shape"][2]))


def find_run(directory: str | os.PathLike) -> tuple[Path, RunRecord] | None:
    """The nearest run directory at or above ``directory`` (e.g. above ``checkpoints/<phase>``), with its record."""
    directory = Path(directory)
    for candidate in (directory, *directory.parents):
        record = RunRecord.read(candidate)
        if record is not None:
            return candidate, record
    return None


def restore_checkpoint(directory: str | os.PathLike, checkpoint: str) -> tuple[keras.Model, RunRecord]:
    """Rebuild the run's model from the record above ``directory`` and load ``checkpoint``'s weights into it."""
    found = find_run(directory)
    if found is None:
        raise UserError(f"no {RUN_FILE} above checkpoint directory {directory}: cannot tell which model to rebuild")
    run_dir, record = found
    model = record.build_model()
    try:
        tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:  # missing objects, or variables of another shape
        raise UserError(f"checkpoint {checkpoint} does not match the model described by {run_dir / RUN_FILE}: "
                        f"{one_line(error)}") from None
    return model, record
