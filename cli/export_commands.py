"""``keras-itl export`` and ``keras-itl push``: publish trained models as TF Serving SavedModel versions."""
from __future__ import annotations

from pathlib import Path

import click

from keras_itl.cli.options import user_errors
from keras_itl.serving_layout import MODEL_NAME_RULE, validate_model_name

MODEL_HELP = ("A .keras model, a keras-itl train run directory, or a run's checkpoints/<phase> directory "
              "(its latest checkpoint, restored into the model rebuilt from run.json).")


TARGET_OPTION = click.option("--target", default=None, help="Dataset spec whose class names the model predicts. "
                             "[default: the training run's, else 0..K-1]")


@click.command()
@click.option("--model", "model_path", required=True, help=MODEL_HELP)
@click.option("--name", required=True,
              help=f"Model name ({MODEL_NAME_RULE}): the versions go to <base-path>/<name>/<version>/.")
@click.option("--base-path", type=click.Path(file_okay=False), default="saved_models", show_default=True,
              help="Directory holding one TF Serving base path per model name.")
@TARGET_OPTION
@user_errors
def export(model_path, name, base_path, target) -> None:
    """Write a model as the next SavedModel version for TF Serving (written aside, then renamed into place)."""
    from keras_itl.export import export_model, load_exportable

    base = Path(base_path) / validate_model_name(name)
    exportable = load_exportable(model_path, target=target)
    result = export_model(exportable.model, base, class_names=exportable.class_names, metadata=exportable.metadata)
    click.echo(f"exported {result.path} (version {result.version})")


@click.command()
@click.option("--model", "model_path", required=True, help=MODEL_HELP)
@click.option("--serving-dir", required=True, type=click.Path(file_okay=False),
              help="The model's TF Serving base path, e.g. saved_models/NAME ; its last part is the model name.")
@click.option("--blessing", "blessing_file", type=click.Path(dir_okay=False), default=None,
              help="blessing.json written by evaluate --baseline. [default: beside the model]")
@TARGET_OPTION
@click.option("--force", is_flag=True, help="Push even without a valid positive blessing.")
@user_errors
def push(model_path, serving_dir, blessing_file, target, force) -> None:
    """Publish a blessed candidate as the next version under --serving-dir (see evaluate --baseline)."""
    from keras_itl.blessing import check_blessing
    from keras_itl.export import export_model, load_exportable

    validate_model_name(Path(serving_dir).name)
    if not force:
        check_blessing(model_path, serving_dir, blessing_file)
    exportable = load_exportable(model_path, target=target)
    result = export_model(exportable.model, serving_dir, class_names=exportable.class_names,
                          metadata=exportable.metadata)
    click.echo(f"pushed {result.path} as version {result.version}")
