"""``keras-itl experiment``: scratch vs model-based vs instance-based on one preset, side by side."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import click

from keras_itl.cli.options import positive, user_errors
from keras_itl.presets import PRESETS


@click.command()
@click.option("--preset", type=click.Choice(list(PRESETS)), default="digits", show_default=True,
              help="The comparison to run: " + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
@click.option("--source", default=None, help="Override the preset's source (imagenet, dataset spec or .keras).")
@click.option("--target", default=None, help="Override the preset's target dataset spec.")
@click.option("--arch", default=None, help="Run only this architecture instead of the preset's.")
@click.option("--policies", default=None, metavar="POLICY[,POLICY...]",
              help="Instance-method rows to run, one per selection policy (e.g. auto,loss:0.2,cleanlab,random:0.2). "
              "[default: the preset's; the digits presets run influence and every baseline]")
@click.option("--seeds", type=int, default=1, show_default=True, callback=positive,
              help="Seeds 0..N-1 per method; the table gives mean ± std over them.")
@click.option("--weights", default=None, help="Local ImageNet weights file for ImageNet presets ('random' skips "
              "them: smoke tests).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data directory.")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where results.md, results.json, the PNGs and every run go. [default: runs/experiment-<preset>]")
@click.option("--export-base", type=click.Path(file_okay=False), default="saved_models", show_default=True,
              help="The best model (lowest validation loss) is exported to <export-base>/<preset>/<version>.")
@click.option("--resume", is_flag=True, help="Continue an interrupted experiment in --output.")
@click.option("--dry-run", is_flag=True, help="Print the train command of every run and exit.")
@user_errors
def experiment(preset, source, target, arch, policies, seeds, weights, data_dir, output, export_base, resume,
               dry_run) -> None:
    """Run scratch, model-based and instance-based transfer on identical splits and budgets; print the table."""
    from keras_itl.experiment import experiment_configs, results_markdown, run_dir_for, run_experiment, train_command
    from keras_itl.presets import OVERRIDES_ENV, get_preset, with_overrides

    chosen = get_preset(preset)
    if os.environ.get(OVERRIDES_ENV):  # the test suite's smaller budget; said aloud so it is never a surprise
        chosen = with_overrides(chosen, os.environ[OVERRIDES_ENV])
        click.echo(f"{OVERRIDES_ENV}={os.environ[OVERRIDES_ENV]}: the preset's budget is overridden", err=True)
    chosen = replace(chosen, source=source or chosen.source, target=target or chosen.target,
                     archs=(arch,) if arch else chosen.archs)
    if policies:
        from keras_itl.selection import parse_policy

        chosen = replace(chosen, instance_policies=tuple(str(parse_policy(p)) for p in policies.split(",")))
    overrides = {key: value for key, value in (("weights", weights), ("data_dir", data_dir)) if value is not None}
    output = Path(output or Path("runs") / f"experiment-{chosen.name}")
    if dry_run:
        for config in experiment_configs(chosen, seeds, overrides):
            click.echo(train_command(config, run_dir_for(output, config)))
        click.echo(f"then: results in {output}, best model exported to {Path(export_base) / chosen.name}/<version>")
        return
    result = run_experiment(chosen, output, seeds=seeds, overrides=overrides, export_base=export_base,
                            resume=resume)
    click.echo(results_markdown(chosen, result.rows, seeds))
    click.echo(f"wrote {output}/results.md, results.json, report.html and PNGs; exported {result.exported} "
               f"in {result.seconds:.0f}s")
