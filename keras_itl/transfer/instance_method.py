"""The instance method (Wang et al., 2019) as its four named steps, in order:

1. ``warm_up``: model-based fine-tuning on all target training data;
2. ``score``: every training instance's influence on the validation loss under the warm-up model
   (or a baseline ranking: highest loss, cleanlab, random);
3. ``select``: the instances to drop under the policy, caps and per-class floors (``auto`` judges
   candidate drop sets by head-only or full refits);
4. ``refit``: the model-based fine-tuning again - from the source weights by default - on the kept
   instances with the same budget in optimizer steps (``steps_budget``).

The validation split is divided so no data judges a choice it made: the warm-up and influence use
the ``influence`` part, candidate judging and the final refit the ``selection`` part, and the
reported validation numbers come from the ``report`` part (see keras_itl.selection.validation_parts).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_itl import registry
from keras_itl.datasets import TargetDataset
from keras_itl.decisions import pinned_ids
from keras_itl.errors import UserError
from keras_itl.evaluation import predict_probabilities
from keras_itl.influence import WorkerShard
from keras_itl.selection import Fold, SelectionResult, parse_policy, select_drops
from keras_itl.selection.head_refit import cross_entropy
from keras_itl.selection.instances import RankedInstances, rank_instances
from keras_itl.selection.report import describe_selection, selection_report, write_selection_files
from keras_itl.selection.validation_parts import split_validation, warm_up_part
from keras_itl.training import TrainResult, is_chief
from keras_itl.transfer.config import TransferConfig
from keras_itl.transfer.fine_tuning import LrFactorChoice, fit_target


class InstanceMethod:
    """One instance-method run on ``model`` (built from the source); the steps leave the final weights in it."""

    def __init__(self, model: keras.Model, data: TargetDataset, config: TransferConfig, *,
                 strategy: tf.distribute.Strategy, run_dir: Path, resume: bool, verbose: bool):
        self.model, self.data, self.config = model, data, config
        self.strategy, self.run_dir, self.resume, self.verbose = strategy, run_dir, resume, verbose
        self.options = config.instance
        self.policy = parse_policy(self.options.policy)
        self.train = data.split("train")
        self.parts = split_validation(data.split("val"), data.info.num_classes, config.seed)
        self.source_weights = model.get_weights()
        self.start_weights: list | None = None
        self.refits: dict[bytes, tuple[list, list[TrainResult], TransferConfig]] = {}  # weights, phases, budget
        self.lr_factor: LrFactorChoice | None = None  # the warm-up's, once it has run
        self.warm_up_weights: list | None = None
        self.final_budget: dict | None = None  # the final refit's epochs, once it has run

    def warm_up(self) -> list[TrainResult]:
        """Model-based fine-tuning on every training instance, validated on the influence and selection parts.

        The fine-tuning rate factor it keeps (chosen on those parts unless set) is the one every refit uses,
        so the refits differ from the warm-up only in the instances they train on."""
        fit = fit_target(self.model, self.train, warm_up_part(self.parts), self.config, strategy=self.strategy,
                         run_dir=self.run_dir, resume=self.resume, verbose=self.verbose, prefix="warmup-")
        self.lr_factor = fit.lr_factor
        self.warm_up_weights = self.model.get_weights()
        return fit.phases

    @property
    def fit_config(self) -> TransferConfig:
        """The final refit's budget: the run's, at the warm-up's fine-tuning rate once it is chosen."""
        if self.lr_factor is None:
            return self.config
        return replace(self.config, fine_tune_lr_factor=self.lr_factor.factor)

    @property
    def refit_config(self) -> TransferConfig:
        """A candidate refit's budget (``auto --auto-judge full``): the final one's, with ``--refit-epochs``."""
        return replace(self.fit_config, epochs=self.options.refit_epochs or self.config.epochs)

    def score(self) -> RankedInstances:
        """The training instances ranked by the policy's score under the warm-up model."""
        config, options = self.config, self.options
        return rank_instances(self.model, self.train, self.parts, self.policy, num_classes=self.data.info.num_classes,
                              seed=config.seed, scope=options.scope, solver=replace(options.solver, seed=config.seed),
                              batch_size=max(config.batch_size, registry.INFLUENCE_BATCH_SIZE),
                              cache_dir=str(self.run_dir), strategy=self.strategy, cross_fit=self.cross_fits,
                              verbose=self.verbose)

    @property
    def cross_fits(self) -> bool:
        """Whether ``auto`` pools its evidence over two cross-fitted folds: with head-refit judging, which costs
        milliseconds a candidate (a full refit per candidate and fold would double the slow judge's cost)."""
        return self.policy.kind == "auto" and self.options.judge == "head"

    def select(self, ranked: RankedInstances) -> tuple[SelectionResult, np.ndarray]:
        """The drop set under the policy, caps and floors, and the keep mask every worker uses (the chief's)."""
        options = self.options
        self.start_weights = self.source_weights if options.start == "source" else self.model.get_weights()
        selection = select_drops(self.train.ids, self.train.labels, ranked.ranking.order_scores, policy=self.policy,
                                 class_names=self.data.info.class_names, max_drop_fraction=options.max_drop_fraction,
                                 min_class_keep_fraction=options.min_class_keep_fraction,
                                 auto_margin=options.auto_margin, auto_min_z=options.auto_min_z,
                                 measure=lambda keep: self._measure(ranked, keep),
                                 eligible=ranked.ranking.eligible,
                                 cross_fit=[Fold(delta, lambda keep, part=part: self._measure(ranked, keep, part))
                                            for delta, part in ranked.folds],
                                 pinned=pinned_ids(self.data))
        if self.verbose:
            print(describe_selection(selection, len(self.train)), flush=True)
        keep = WorkerShard(self.strategy).from_chief(selection.keep_mask(self.train.ids))  # decided once, by the chief
        return selection, keep

    def refit(self, keep: np.ndarray) -> list[TrainResult]:
        """Fine-tune on the kept instances (reusing auto's full-budget refit of the same set) into ``model``.

        When nothing is dropped and the refit would start from the source, the warm-up already is that fit -
        every instance, the same budget and rate - early-stopped on twice the validation data a refit gets
        (the influence and selection parts): it is the final model, and no refit runs."""
        if self._warm_up_is_final(dropped=not keep.all()):
            self.model.set_weights(self.warm_up_weights)
            if self.verbose:
                print("selection dropped nothing: the warm-up model is the final model", flush=True)
            return []
        if self.options.refit_epochs is not None or keep.tobytes() not in self.refits:
            self._fit_without_dropped(keep, self.fit_config, "final")
        weights, history, budget = self.refits[keep.tobytes()]
        self.final_budget = {"epochs": budget.epochs, "head_epochs": budget.head_epochs, "kept": int(keep.sum()),
                             "of": len(keep)}
        self.model.set_weights(weights)
        return history

    def report(self, ranked: RankedInstances, selection: SelectionResult) -> tuple[dict, dict[str, str]]:
        """The selection report (influence.json / selection.json) and, on the chief, the files written."""
        report = {**selection_report(ranked, selection, self.parts, self.model, self.data.info.flipped_ids,
                                     self.options.judge),
                  "refit_epochs": self.refit_config.epochs,
                  "final_refit_budget": self.final_budget,
                  "final_model": "warm-up" if self._warm_up_is_final(dropped=bool(selection.drop_ids)) else "refit",
                  "fine_tune_lr_factor": self.lr_factor.to_dict() if self.lr_factor else None}
        files = (write_selection_files(ranked, selection, report, self.data.info.class_names, self.run_dir)
                 if is_chief(self.strategy) else {})
        return report, files

    def _warm_up_is_final(self, dropped: bool) -> bool:
        """Whether the warm-up is the final model: nothing dropped, and the refit would start from the source."""
        return not dropped and self.options.start == "source"

    def _fit_without_dropped(self, keep: np.ndarray, budget: TransferConfig, name: str) -> np.ndarray:
        """Fine-tune the model from the start weights on the kept instances; its selection-part losses.

        The refits train the warm-up's model object itself (its weights are not needed after scoring), so
        they reuse its traced training and evaluation steps instead of tracing a copy's."""
        self.model.set_weights(self.start_weights)
        kept = int(keep.sum())
        budget = steps_budget(budget, len(keep), kept)
        if self.verbose:
            print(f"refit ({name}): {budget.head_epochs} head + {budget.epochs} fine-tuning epochs on {kept} of "
                  f"{len(keep)} instances (epochs scaled by {len(keep)}/{kept}: about the warm-up's optimizer steps)",
                  flush=True)
        fit = fit_target(self.model, self.train.subset(np.flatnonzero(keep)), self.parts["selection"], budget,
                         strategy=self.strategy, run_dir=self.run_dir / "refits" / name, resume=self.resume,
                         verbose=self.verbose)
        self.refits[keep.tobytes()] = (self.model.get_weights(), fit.phases, budget)
        selection = self.parts["selection"]
        return cross_entropy(predict_probabilities(self.model, selection), selection.labels)

    def _measure(self, ranked: RankedInstances, keep: np.ndarray, part: str = "selection") -> np.ndarray:
        """How ``auto`` judges a candidate keep mask: per-example losses on validation ``part`` after a
        head-only refit on cached features, or (on the selection part) after a full refit."""
        if self.options.judge == "head":
            losses = ranked.head_losses(keep, part)
        else:
            losses = self._fit_without_dropped(keep, self.refit_config, f"candidate-{len(self.refits) + 1}")
        if self.verbose:
            print(f"selection: {self.options.judge} refit without {int((~keep).sum())} instances - "
                  f"{part}-part val_loss {losses.mean():.4f}", flush=True)
        return losses


def steps_budget(budget: TransferConfig, total: int, kept: int) -> TransferConfig:
    """``budget`` (epochs over ``total`` instances) for a fit on ``kept`` of them with as many optimizer steps.

    A refit on fewer instances at the same epochs would take fewer steps than the warm-up and the
    ``model`` method it is compared with - its learning-rate schedule would end before the model had
    learnt as much - so a drop would be judged together with a shorter training. Its head and
    fine-tuning epochs are scaled by ``total / kept`` (rounded) instead.
    """
    if not 0 < kept <= total:
        raise UserError(f"a refit needs between 1 and {total} kept instances, got {kept}")
    scale = total / kept
    return replace(budget, epochs=max(1, round(budget.epochs * scale)),
                   head_epochs=round(budget.head_epochs * scale))


def run_instance_method(model: keras.Model, data: TargetDataset, config: TransferConfig, *,
                        strategy: tf.distribute.Strategy, run_dir: Path, resume: bool, verbose: bool
                        ) -> tuple[list[TrainResult], dict, dict[str, str]]:
    """Warm up -> score -> select -> refit; returns the phases, the selection report and the files written."""
    method = InstanceMethod(model, data, config, strategy=strategy, run_dir=run_dir, resume=resume, verbose=verbose)
    phases = method.warm_up()
    ranked = method.score()
    selection, keep = method.select(ranked)
    history = method.refit(keep)
    report, files = method.report(ranked, selection)
    return phases + history, report, files
