"""``keras-itl serve`` and ``keras-itl predict``: the TF Serving–compatible server and its client."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from keras_itl.cli.options import positive, user_errors
from keras_itl.serving_layout import BYTES_SIGNATURE


@click.command()
@click.option("--model-base-path", type=click.Path(file_okay=False), default=None,
              help="Directory holding the model's integer version directories (<base>/<version>/saved_model.pb).")
@click.option("--model-name", default=None, help="Name the model is served under (the <name> of /v1/models/<name>).")
@click.option("--model-config-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="TF Serving text ModelServerConfig serving several models (instead of --model-base-path "
              "and --model-name); relative base_path entries are taken from the file's folder.")
@click.option("--rest-port", type=int, default=8501, show_default=True, help="Port of the REST API.")
@click.option("--grpc-port", type=int, default=8500, show_default=True, help="Port of the gRPC API.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 exposes the server to the network).")
@click.option("--poll-seconds", type=float, default=1.0, show_default=True, callback=positive,
              help="How often the base paths are scanned for new or removed versions.")
@click.option("--max-request-bytes", type=int, default=64 * 1024 * 1024, show_default=True, callback=positive,
              help="Largest accepted REST request body; bigger ones get a 413 JSON error.")
@click.option("--grpc-max-message-bytes", type=click.IntRange(1, 2**31 - 1), default=2**31 - 1, show_default=True,
              help="Largest gRPC message, and largest tensor a gRPC request may decode to (TF Serving: 2 GiB).")
@click.option("--header-timeout-seconds", type=float, default=10.0, show_default=True, callback=positive,
              help="Seconds a REST client has to send a request's headers once it started them.")
@click.option("--body-timeout-seconds", type=float, default=60.0, show_default=True, callback=positive,
              help="Seconds a REST client has to send a request's body; slower ones get a 408 JSON error.")
@click.option("--grace-seconds", type=float, default=5.0, show_default=True, callback=positive,
              help="On SIGTERM, how long requests in flight may take before the server exits anyway.")
@click.option("--max_num_load_retries", "--max-num-load-retries", "max_num_load_retries", type=click.IntRange(0),
              default=5, show_default=True, help="Times a failed version load is retried (as in TF Serving).")
@click.option("--load_retry_interval_micros", "--load-retry-interval-micros", "load_retry_interval_micros",
              type=click.IntRange(0), default=60_000_000, show_default=True,
              help="Microseconds between retries of a failed version load (as in TF Serving).")
@click.option("--monitoring_config_file", "--monitoring-config-file", "monitoring_config_file",
              type=click.Path(dir_okay=False, exists=True), default=None,
              help="TF Serving text MonitoringConfig; with prometheus_config { enable: true } the REST port serves "
              "Prometheus metrics at its path (default /monitoring/prometheus/metrics).")
@click.option("--enable_batching", "--enable-batching", "enable_batching", is_flag=True,
              help="Run concurrent requests for the same signature as one batch (REST and gRPC alike).")
@click.option("--batching_parameters_file", "--batching-parameters-file", "batching_parameters_file",
              type=click.Path(dir_okay=False, exists=True), default=None,
              help="TF Serving text BatchingParameters (max_batch_size, batch_timeout_micros, max_enqueued_batches, "
              "num_batch_threads, allowed_batch_sizes) for --enable_batching.")
@click.option("--workers", type=int, default=8, show_default=True, callback=positive,
              help="Threads running inference for each protocol.")
@user_errors
def serve(model_base_path, model_name, model_config_file, rest_port, grpc_port, host, poll_seconds,
          max_request_bytes, grpc_max_message_bytes, header_timeout_seconds, body_timeout_seconds, grace_seconds,
          max_num_load_retries, load_retry_interval_micros, monitoring_config_file, enable_batching,
          batching_parameters_file, workers) -> None:
    """Serve SavedModels over TF Serving's REST and gRPC APIs, reloading new versions as they appear."""
    # Every option and config file is checked before TensorFlow is imported, so a mistake is reported at once.
    from keras_itl.errors import UserError
    from keras_itl.serving.batching_parameters import load_batching_parameters
    from keras_itl.serving.metrics import metrics_path
    from keras_itl.serving.model_config import load_model_config_file, single_model

    if model_config_file and (model_base_path or model_name):
        raise UserError("give either --model-config-file or --model-base-path with --model-name, not both")
    if model_config_file:
        models = load_model_config_file(model_config_file)
    elif model_base_path and model_name:
        models = single_model(model_name, model_base_path)
    else:
        raise UserError("give --model-base-path and --model-name, or --model-config-file")
    if batching_parameters_file and not enable_batching:
        raise UserError("--batching_parameters_file needs --enable_batching")
    batching = load_batching_parameters(batching_parameters_file) if enable_batching else None
    metrics = metrics_path(monitoring_config_file)

    from keras_itl.serving.cpu_lanes import prepare_before_tensorflow
    from keras_itl.serving.tensorflow_import import import_tensorflow_without_keras

    prepare_before_tensorflow()
    import_tensorflow_without_keras()
    from keras_itl.serving.model_manager import LoadRetries
    from keras_itl.serving.rest import RestLimits
    from keras_itl.serving.server import ServerOptions, run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = RestLimits(max_request_bytes=max_request_bytes, header_timeout=header_timeout_seconds,
                        body_timeout=body_timeout_seconds)
    retries = LoadRetries(max_retries=max_num_load_retries, interval_seconds=load_retry_interval_micros / 1e6)
    run_server(models, ServerOptions(host=host, rest_port=rest_port, grpc_port=grpc_port, poll_seconds=poll_seconds,
                                     rest_limits=limits, grpc_max_message_bytes=grpc_max_message_bytes,
                                     workers=workers, grace_seconds=grace_seconds, load_retries=retries,
                                     metrics_path=metrics, batching=batching))


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--server", default=None, metavar="URL", help="REST endpoint, e.g. http://127.0.0.1:8501.")
@click.option("--grpc", "grpc_target", default=None, metavar="HOST:PORT", help="gRPC endpoint, e.g. 127.0.0.1:8500.")
@click.option("--model", required=True, help="Served model name.")
@click.option("--version", type=int, default=None, help="Model version. [default: the latest served]")
@click.option("--signature", default=BYTES_SIGNATURE, show_default=True,
              help="Signature taking encoded images as its one string input.")
@click.option("--top", type=int, default=3, show_default=True, callback=positive, help="Classes shown per image.")
@user_errors
def predict(images, server, grpc_target, model, version, signature, top) -> None:
    """Send image files to a served model and print its top classes with their probabilities.

    Classes are printed as indices: the serving APIs do not expose a model's class-name assets.
    """
    import numpy as np

    from keras_itl.errors import UserError
    from keras_itl.serving.client import GrpcClient, RestClient

    if (server is None) == (grpc_target is None):
        raise UserError("give exactly one of --server URL or --grpc HOST:PORT")
    client = RestClient(server, model, version) if server else GrpcClient(grpc_target, model, version)
    outputs = client.predict([Path(image).read_bytes() for image in images], signature_name=signature)
    if "probabilities" not in outputs:
        raise UserError(f"signature {signature!r} has no 'probabilities' output (it has {sorted(outputs)})")
    for image, probabilities in zip(images, np.asarray(outputs["probabilities"], dtype=float)):
        best = np.argsort(-probabilities, kind="stable")[:top]
        click.echo(f"{image}: " + ", ".join(f"{index} ({probabilities[index]:.4f})" for index in best))
