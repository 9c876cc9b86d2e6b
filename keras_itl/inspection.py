"""`keras-itl influence`: a trained model's target training instances scored, selected and reported, without
training; optionally checked against leave-one-out retraining.

The frozen part's activations are computed once and shared by the solve, the scores and the
leave-one-out check; the solved vector s is saved in the output directory, so running again on the
same model and data re-scores without solving.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from keras_itl import registry
from keras_itl.datasets import load_dataset
from keras_itl.decisions import apply_decisions, pinned_ids, read_decisions
from keras_itl.errors import UserError
from keras_itl.evaluation import load_trained_model
from keras_itl.influence import (
    InfluenceConfig,
    SolverOptions,
    compute_influence,
    prepare_features,
)
from keras_itl.influence.loo import check_leave_one_out
from keras_itl.influence.report import write_loo_report
from keras_itl.influence.store import SOLUTION_FILE
from keras_itl.selection import parse_policy, select_drops
from keras_itl.selection.report import describe_selection, write_influence_report

DEFAULT_SOLVER = SolverOptions()  # every field the registry's default


def inspect_influence(model_path: str | os.PathLike, target: str, dataset_options: dict,
                      output_dir: str | os.PathLike, *, scope: str = registry.SCOPE,
                      solver: SolverOptions = DEFAULT_SOLVER, policy: str = registry.INSPECT_POLICY,
                      max_drop_fraction: float = registry.MAX_DROP_FRACTION,
                      min_class_keep_fraction: float = registry.MIN_CLASS_KEEP_FRACTION,
                      batch_size: int = registry.INFLUENCE_BATCH_SIZE,
                      check_loo: int | None = None, decisions: str | os.PathLike | None = None,
                      verbose: bool = True) -> list[str]:
    """Score, select and report; optionally check against leave-one-out retraining. Returns summary lines.

    ``decisions`` (a decisions.csv, keras_itl.decisions) is applied to the training split first: its dropped
    ids are not scored, its relabels are scored with their new class, and its kept ids are never selected.
    ``solver``'s seed (LiSSA's sampling) is the dataset's seed, as in a training run.
    """
    if parse_policy(policy).kind == "auto":
        raise UserError("policy auto refits candidate drop sets; use keras-itl train --method instance for it")
    if parse_policy(policy).family != "influence":
        raise UserError(f"policy {policy} is a baseline, not an influence rule; use sign or fraction:P here, "
                        "or keras-itl train --method instance --policy for the baselines")
    model = load_trained_model(model_path)
    data = load_dataset(target, **dataset_options)
    if decisions is not None:
        data = apply_decisions(data, read_decisions(decisions))
    train, val = data.split("train"), data.split("val")
    output_dir = Path(output_dir)
    config = InfluenceConfig(scope=scope, batch_size=batch_size, cache_dir=str(output_dir),
                             solver=replace(solver, seed=dataset_options.get("seed", registry.SEED)))
    features = prepare_features(model, train, val, config, verbose=verbose)
    result = compute_influence(model, train, val, config, features=features, solution_path=output_dir / SOLUTION_FILE,
                               verbose=verbose)
    selection = select_drops(result.table.ids, result.table.labels, result.table.predicted_delta_val_loss,
                             policy=policy, class_names=data.info.class_names, max_drop_fraction=max_drop_fraction,
                             min_class_keep_fraction=min_class_keep_fraction, pinned=pinned_ids(data))
    files = write_influence_report(result, selection, train, data.info.class_names, output_dir,
                                   flipped_ids=data.info.flipped_ids,
                                   extra={"decisions": data.info.decisions} if decisions is not None else None)
    reused = ", saved solution reused" if result.solver.reused else ""
    lines = [(f"influence: {len(train)} training instances, {result.summary()['num_harmful']} predicted harmful "
              f"({result.scope} scope, {result.num_parameters} parameters, {result.solver.solver} residual "
              f"{result.solver.residual:.2g}{reused})"),
             describe_selection(selection, len(train))]
    if check_loo:
        report = check_leave_one_out(model, train, val, result, check_loo, config, features=features,
                                     verbose=verbose)
        files.update(write_loo_report(report, output_dir))
        lines.append(f"leave-one-out check over {check_loo} instances: Pearson {report.pearson:.3f}, "
                     f"Spearman {report.spearman:.3f}")
    lines.append(f"wrote {', '.join(sorted(Path(path).name for path in files.values()))} to {output_dir}")
    return lines
