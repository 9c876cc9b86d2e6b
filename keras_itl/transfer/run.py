"""One transfer run end to end: load the target, build the model from its source, train by the
chosen method (a plug-in of ``keras_itl.methods``), test, and write the run directory (model,
run.json, metrics, plots; optionally a TF Serving export).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from keras_itl.backbones import model_channels
from keras_itl.datasets import TargetDataset, load_dataset, parse_imbalance
from keras_itl.decisions import apply_decisions, read_decisions
from keras_itl.determinism import make_deterministic
from keras_itl.evaluation import Metrics, evaluate_model
from keras_itl.evaluation_report import write_evaluation
from keras_itl.export import export_model
from keras_itl.methods import MethodInputs, get_method
from keras_itl.plots import plot_training_curves
from keras_itl.report import write_run_report
from keras_itl.run_record import RunRecord
from keras_itl.training import TrainResult, guard_run_options, is_chief, make_strategy
from keras_itl.training.compiled_step import release_compiled_steps
from keras_itl.transfer.config import TransferConfig
from keras_itl.transfer.fine_tuning import build_initial_model
from keras_itl.transfer.target_labels import restrict_labels


@dataclass
class TransferResult:
    """The outcome of a run: test metrics, phase histories and where everything was written."""

    config: TransferConfig
    test: Metrics
    phases: list[TrainResult]
    dataset: dict
    output_dir: Path
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    influence: dict | None = None
    fine_tuning: dict | None = None  # the fine-tuning rate factor kept and each candidate's val loss
    # the trained model, in memory (an experiment exports its best run's from here); not part of the record
    model: keras.Model | None = field(default=None, repr=False, compare=False)

    @property
    def dropped(self) -> int:
        """How many target training instances the instance method dropped (0 for other methods)."""
        return len(self.influence["selection"]["drop_ids"]) if self.influence else 0

    def summary(self) -> str:
        """One line for the end of a run."""
        source = self.config.source if get_method(self.config.method).uses_source else "random init"
        dropped = f", dropped {self.dropped} of {self.dataset['sizes']['train']} training instances" \
            if self.influence else ""
        return (f"{self.config.method}: {self.config.arch} from {source} on {self.config.target} - test error rate "
                f"{self.test.error_rate:.2%} (accuracy {self.test.accuracy:.2%}, loss {self.test.loss:.4f}, "
                f"{self.test.num_examples} test images){dropped} in {self.seconds:.0f}s - wrote {self.output_dir}"
                f"{' and ' + self.files['saved_model'] if 'saved_model' in self.files else ''}")

    def record(self) -> RunRecord:
        """The run's record, as written to ``run.json``."""
        return RunRecord(config=asdict(self.config), test=self.test.to_dict(),
                         phases=[p.to_dict() for p in self.phases], dataset=self.dataset, seconds=self.seconds,
                         files=self.files, influence=self.influence, fine_tuning=self.fine_tuning)

    def to_dict(self) -> dict:
        return self.record().to_dict()


def load_target(config: TransferConfig) -> TargetDataset:
    """The target dataset with the run's split, size, imbalance and noise options, and its decisions applied."""
    imbalance = parse_imbalance(config.imbalance) if config.imbalance else None
    data = load_dataset(config.target, seed=config.seed, val_fraction=config.val_fraction,
                        max_train_examples=config.max_train_examples, imbalance=imbalance,
                        label_noise=config.label_noise, noise_kind=config.noise_kind, data_dir=config.data_dir)
    return apply_decisions(data, read_decisions(config.decisions)) if config.decisions else data


def run_transfer(config: TransferConfig, output_dir: str | os.PathLike, *, resume: bool = False,
                 strategy: tf.distribute.Strategy | None = None, verbose: bool = True,
                 export_to: str | os.PathLike | None = None) -> TransferResult:
    """Run one method end to end and write model, histories, test metrics and plots to ``output_dir``.

    With ``export_to`` (a TF Serving model base path such as ``saved_models/<name>``) the final model
    is also published there as the next SavedModel version.

    Args:
        config: Everything the run depends on; recorded in ``run.json``.
        output_dir: The run directory (created); only the chief worker writes the run's outputs there.
        resume: Continue from the checkpoints in ``output_dir`` (the options must match); without it a
            directory that holds a checkpointed run is refused.
        strategy: Distribution strategy; None: ``make_strategy()`` (all local GPUs or CPUs, or the TF_CONFIG cluster).
        verbose: Print the target's description and training progress.
        export_to: TF Serving model base path to publish the final model under; None: no export.

    Returns:
        The test metrics, training phases, dataset description, files written, the selection report (None
        for a method that selects no instances) and the trained model in memory.
    """
    make_deterministic()
    started = time.perf_counter()
    output_dir = Path(output_dir)
    strategy = strategy or make_strategy()  # first: a multi-worker strategy must precede other TF ops
    chief = is_chief(strategy)  # only the chief writes outputs; other workers only scratch checkpoints
    guard_run_options(output_dir, asdict(config), resume=resume, chief=chief)
    data = load_target(config)
    if verbose:
        sizes = ", ".join(f"{k} {v}" for k, v in data.info.sizes.items())
        skipped = f", skipped {len(data.info.skipped_files)} unreadable files" if data.info.skipped_files else ""
        print(f"target: {data.info.name}, {data.info.num_classes} classes ({sizes}){skipped}", flush=True)
    channels = model_channels(config.arch, data.info.image_shape[2])
    model = build_initial_model(config, data.info.num_classes, channels, strategy, verbose)
    method = get_method(config.method)
    visible = restrict_labels(data, config.target_labels, keeps_unlabelled=method.unlabelled_target, seed=config.seed)
    outcome = method.fit(MethodInputs(model, visible, config, strategy, output_dir, resume, verbose))
    files = dict(outcome.files)
    release_compiled_steps(model)  # training is over: its optimizers need not live as long as the model
    test = evaluate_model(model, data.split("test"), class_names=data.info.class_names)
    result = TransferResult(config=config, test=test, phases=outcome.phases, dataset=data.info.to_dict(),
                            output_dir=output_dir, seconds=time.perf_counter() - started, files=files,
                            influence=outcome.influence, fine_tuning=outcome.fine_tuning, model=model)
    if not chief:
        return result
    files.update({name: str(path) for name, path in
                  write_evaluation(test, data.info.class_names, output_dir, "test").items()})
    model.save(output_dir / "model.keras")
    files["model"] = str(output_dir / "model.keras")
    plot_training_curves({p.name: p.history for p in outcome.phases}, output_dir / "training_curves.png")
    files["training_curves"] = str(output_dir / "training_curves.png")
    if export_to is not None:
        exported = export_model(model, export_to, class_names=data.info.class_names,
                                metadata=result.record().export_metadata())
        files["saved_model"] = str(exported.path)
        if verbose:
            print(f"exported {exported.path} (version {exported.version})", flush=True)
    result.record().write(output_dir)
    write_run_report(output_dir, model=model, data=data)
    return result
