"""Latency and requests/s of `keras-itl serve` over REST and gRPC against an in-process call, in one run.

A small-cnn classifier (random weights, 28x28x1, 10 classes) is exported with keras-itl's exporter and
served by a real `keras-itl serve` subprocess on free 127.0.0.1 ports. The same version is also loaded
here with tf.saved_model.load, so all three ways run the same `serving_default` signature:

- in-process: the loaded signature called directly (numpy in, numpy probabilities out);
- REST: http.client POSTs of JSON `{"instances": ...}` (row format) to `:predict` over one keep-alive
  connection per client; the body is encoded and the response parsed on every request, as a real
  client does;
- REST b64: the same images as PNG files, sent base64-encoded as `{"b64": ...}` to the
  `serving_bytes` signature (what a client posting camera images does); the server decodes them;
- gRPC: keras-itl's GrpcClient (PredictionService.Predict), one channel per client.

REST clients encode requests and parse responses with orjson, as keras-itl's RestClient does.

Each cell (way x batch 1/32 x 1/8 clients) warms every client up, then times a fixed number of
requests per client, cut short at a per-cell time limit. Clients are threads of this process, so
on a 2-core machine they share the cores with the server, as local callers do. Predictions of the
three ways are checked to agree before anything is timed.

A last measurement times small REST requests (batch 1, one client) while another connection keeps one
big `:predict` body (--big-mb, default 16 MB of JSON) in flight, against the same requests on an idle
server: a big body must not stall everyone else.

Targets (2 CPU cores, an otherwise idle machine; ``TARGETS``): REST p50 minus in-process p50 <= 1.5 ms
at batch 1 with one client; REST images/s at batch 32 >= 60% of in-process; REST (batch 1) 8 clients
>= 1.5x the requests/s of one client, and that gain >= 0.8x gRPC's gain in the same run
(``rest_vs_grpc_clients_8_vs_1``); REST b64 images/s at batch 32 >= 60% of in-process float. Each run
prints its table, its targets and one JSON line of its figures. ``--repeat N`` makes N whole runs, each
against a freshly started server; the last line printed is one JSON object with every run's figures,
each figure's worst run, and whether each target holds in the worst run.

    python benchmarks/serving_latency.py [--requests 100] [--warmup 10] [--max-seconds 8] [--big-mb 16] [--repeat 3]
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_itl.backbones import build_model  # noqa: E402
from keras_itl.export import export_model  # noqa: E402
from keras_itl.serving.client import GrpcClient  # noqa: E402
from keras_itl.serving_layout import BYTES_SIGNATURE, DEFAULT_SIGNATURE  # noqa: E402

MODEL_NAME = "digits"
HOST = "127.0.0.1"
BATCHES = (1, 32)
CLIENTS = (1, 8)
WAYS = ("in-process", "REST", "REST b64", "gRPC")

Call = Callable[[], np.ndarray]
OpenCaller = Callable[[], AbstractContextManager[Call]]


@dataclass(frozen=True)
class Cell:
    """What one (way, batch, clients) measurement found."""

    requests: int
    p50_ms: float
    p99_ms: float
    requests_per_second: float


# -- model and server --------------------------------------------------------------------------------
def export_classifier(base_path: Path, arch: str = "small-cnn", image_size: int = 28, channels: int = 1) -> Path:
    """Export a random-weight 10-class classifier (small-cnn 28x28x1 by default) as version 1 under
    ``base_path``; its directory."""
    keras.utils.set_random_seed(0)
    model = build_model(arch, 10, image_size=image_size, channels=channels, weights=None)
    result = export_model(model, base_path, class_names=[str(digit) for digit in range(10)],
                          metadata={"architecture": arch, "source": "benchmark (random weights)"})
    return result.path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def keras_itl_script() -> Path:
    """The ``keras-itl`` entry point installed beside this interpreter, so the venv's own is used."""
    script = Path(sys.executable).with_name("keras-itl")
    if not script.exists():
        raise SystemExit(f"no keras-itl script beside {sys.executable}; install the package (pip install -e .)")
    return script


def wait_available(process: subprocess.Popen, rest_port: int, log_path: Path, timeout: float = 120.0) -> None:
    """Poll the model status until a version is AVAILABLE; fail with the server log otherwise."""
    status_url = f"http://{HOST}:{rest_port}/v1/models/{MODEL_NAME}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(status_url, timeout=5) as response:
                states = [entry["state"] for entry in json.loads(response.read())["model_version_status"]]
            if "AVAILABLE" in states:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"model not available within {timeout:.0f}s:\n{log_path.read_text(errors='replace')}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM (graceful shutdown), then kill if it has not exited within 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serve(base_path: Path, log_path: Path, extra: tuple[str, ...] = ()) -> Iterator[tuple[int, int, int]]:
    """Run ``keras-itl serve`` on free local ports until the block ends; yields (pid, REST port, gRPC port)."""
    rest_port, grpc_port = free_port(), free_port()
    command = [str(keras_itl_script()), "serve", "--model-base-path", str(base_path), "--model-name", MODEL_NAME,
               "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), "--host", HOST, *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_available(process, rest_port, log_path)
            yield process.pid, rest_port, grpc_port
        finally:
            stop_server(process)


# -- the three ways to call the signature ------------------------------------------------------------
def in_process(signature, images: np.ndarray) -> OpenCaller:
    """Callers of the loaded ``serving_default`` signature (shared by all client threads)."""
    @contextlib.contextmanager
    def open_caller() -> Iterator[Call]:
        yield lambda: signature(images=tf.constant(images))["probabilities"].numpy()
    return open_caller


def rest_caller(rest_port: int, body: Callable[[], bytes], read: Callable[[dict], np.ndarray]) -> OpenCaller:
    """Callers POSTing ``body()`` to ``:predict`` over their own keep-alive HTTP connection."""
    path = f"/v1/models/{MODEL_NAME}:predict"
    headers = {"Content-Type": "application/json"}

    @contextlib.contextmanager
    def open_caller() -> Iterator[Call]:
        connection = http.client.HTTPConnection(HOST, rest_port, timeout=120)

        def call() -> np.ndarray:
            connection.request("POST", path, body(), headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"REST answered {response.status}: {answer[:200]!r}")
            return read(orjson.loads(answer))

        try:
            yield call
        finally:
            connection.close()
    return open_caller


def row_probabilities(answer: dict) -> np.ndarray:
    return np.array([row["probabilities"] for row in answer["predictions"]], np.float32)


def rest(rest_port: int, images: np.ndarray) -> OpenCaller:
    """Row-format JSON of the float batch to ``serving_default``, encoded on every request."""
    return rest_caller(rest_port, lambda: orjson.dumps({"instances": images}, option=orjson.OPT_SERIALIZE_NUMPY),
                        row_probabilities)


def _rest_b64(rest_port: int, pngs: list[bytes]) -> OpenCaller:
    """The batch as PNG files in ``{"b64": ...}`` objects to ``serving_bytes``, encoded on every request."""
    def body() -> bytes:
        return orjson.dumps({"signature_name": BYTES_SIGNATURE,
                             "instances": [{"b64": base64.b64encode(png).decode("ascii")} for png in pngs]})
    return rest_caller(rest_port, body, row_probabilities)


def grpc_opener(grpc_port: int, images: np.ndarray) -> OpenCaller:
    """Callers using GrpcClient, each on its own channel."""
    @contextlib.contextmanager
    def open_caller() -> Iterator[Call]:
        with GrpcClient(f"{HOST}:{grpc_port}", MODEL_NAME) as client:
            yield lambda: client.predict(images)["probabilities"]
    return open_caller


def check_agreement(openers: dict[str, OpenCaller]) -> None:
    """All ways must return the same probabilities for the same batch, or the comparison means nothing."""
    results = {}
    for way, open_caller in openers.items():
        with open_caller() as call:
            results[way] = call()
    for way, probabilities in results.items():
        np.testing.assert_allclose(probabilities, results["in-process"], rtol=1e-4, atol=1e-6,
                                   err_msg=f"{way} disagrees with the in-process call")


# -- measuring ---------------------------------------------------------------------------------------
def client_spans(open_caller: OpenCaller, warmup: int, requests: int, max_seconds: float,
                 start_together: threading.Barrier) -> list[tuple[float, float]]:
    """(start, end) of each timed request of one client, after its warm-up; stops at the time limit."""
    with open_caller() as call:
        try:
            for _ in range(warmup):
                call()
        except BaseException:
            start_together.abort()  # the other clients fail now instead of waiting for this one
            raise
        start_together.wait()
        deadline = time.perf_counter() + max_seconds
        spans = []
        while len(spans) < requests and time.perf_counter() < deadline:
            started = time.perf_counter()
            call()
            spans.append((started, time.perf_counter()))
    return spans


def concurrent_spans(open_caller: OpenCaller, clients: int, warmup: int, requests: int,
                     max_seconds: float) -> list[tuple[float, float]]:
    """(start, end) of every timed request of ``clients`` concurrent clients (see ``client_spans``)."""
    start_together = threading.Barrier(clients, timeout=120)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client_spans, open_caller, warmup, requests, max_seconds, start_together)
                   for _ in range(clients)]
        return [span for future in futures for span in future.result()]


def cell_of(spans: list[tuple[float, float]], wall: float | None = None) -> Cell:
    """Latency percentiles of ``spans``; requests/s over ``wall`` seconds (default: first start to last end)."""
    latencies_ms = np.array([end - start for start, end in spans]) * 1000.0
    if wall is None:
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    return Cell(requests=len(spans), p50_ms=float(p50), p99_ms=float(p99), requests_per_second=len(spans) / wall)


def _measure(open_caller: OpenCaller, clients: int, args: argparse.Namespace) -> Cell:
    """Run ``clients`` concurrent clients; latency percentiles over all requests, requests/s over the wall time."""
    return cell_of(concurrent_spans(open_caller, clients, args.warmup, args.requests, args.max_seconds))


# -- report ------------------------------------------------------------------------------------------
def _print_table(cells: dict[tuple[str, int, int], Cell]) -> None:
    print(f"{'way':<11}{'batch':>6}{'clients':>8}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}"
          f"{'images/s':>10}")
    for (way, batch, clients), cell in cells.items():
        print(f"{way:<11}{batch:>6}{clients:>8}{cell.requests:>9}{cell.p50_ms:>9.2f}{cell.p99_ms:>9.2f}"
              f"{cell.requests_per_second:>9.1f}{cell.requests_per_second * batch:>10.1f}")


def _in_flight(open_caller: OpenCaller, running: threading.Event, stop: threading.Event,
               durations: list[float]) -> None:
    """Keep one request of ``open_caller`` in flight until ``stop``; ``running`` is set once the first is sent."""
    with open_caller() as call:
        while not stop.is_set():
            started = time.perf_counter()
            running.set()
            call()
            durations.append(time.perf_counter() - started)


def _measure_beside_big(small: OpenCaller, big: OpenCaller, args: argparse.Namespace) -> tuple[Cell, list[float]]:
    """Small requests from one client while another connection keeps a big request in flight."""
    running, stop, durations = threading.Event(), threading.Event(), []
    worker = threading.Thread(target=_in_flight, args=(big, running, stop, durations), daemon=True)
    worker.start()
    running.wait()
    time.sleep(0.05)  # the big body is being sent and decoded now
    try:
        cell = _measure(small, 1, args)
    finally:
        stop.set()
        worker.join()
    return cell, durations


@dataclass(frozen=True)
class Target:
    """A bound on one figure: ``figure >= bound`` (or ``<=`` when ``at_most``)."""

    figure: str
    bound: float
    at_most: bool = False

    def met(self, value: float) -> bool:
        return value <= self.bound if self.at_most else value >= self.bound

    @property
    def condition(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.bound:g}"

    def __str__(self) -> str:
        return f"{self.figure} {self.condition}"


# Issue 26's targets, each to hold in the worst of --repeat runs (2 CPU cores, an otherwise idle machine).
TARGETS = (
    Target("rest_overhead_ms_b1", 1.5, at_most=True),
    Target("rest_vs_inprocess_images_b32", 0.6),
    Target("rest_clients_8_vs_1", 1.5),
    Target("rest_vs_grpc_clients_8_vs_1", 0.8),
    Target("b64_vs_inprocess_images_b32", 0.6),
)
# Figures where a smaller value is the better one; for all others, larger is better.
LOWER_IS_BETTER = {"rest_overhead_ms_b1", "grpc_overhead_ms_b1", "small_p99_ms_idle", "small_p99_ms_big_in_flight",
                   "big_request_seconds"}


def _figures(cells: dict[tuple[str, int, int], Cell]) -> dict[str, float]:
    """The issue's named figures, from cells measured in this run."""
    def images(way: str, clients: int = 1) -> float:
        return cells[way, 32, clients].requests_per_second * 32

    def scaling(way: str) -> float:
        return cells[way, 1, 8].requests_per_second / cells[way, 1, 1].requests_per_second
    return {
        "rest_overhead_ms_b1": cells["REST", 1, 1].p50_ms - cells["in-process", 1, 1].p50_ms,
        "rest_vs_inprocess_images_b32": images("REST") / images("in-process"),
        "rest_clients_8_vs_1": scaling("REST"),
        "rest_vs_grpc_clients_8_vs_1": scaling("REST") / scaling("gRPC"),
        "b64_vs_inprocess_images_b32": images("REST b64") / images("in-process"),
        "grpc_overhead_ms_b1": cells["gRPC", 1, 1].p50_ms - cells["in-process", 1, 1].p50_ms,
        "grpc_vs_inprocess_images_b32": images("gRPC") / images("in-process"),
        "grpc_clients_8_vs_1": scaling("gRPC"),
    }


def _print_targets(figures: dict[str, float]) -> None:
    """Each target with this run's figure."""
    for target in TARGETS:
        value = figures[target.figure]
        print(f"{target.figure} = {value:.3f} (target {target.condition}): "
              f"{'met' if target.met(value) else 'NOT met'}")
    print(f"gRPC (no targets): overhead {figures['grpc_overhead_ms_b1']:.2f} ms, images/s share at batch 32 "
          f"{figures['grpc_vs_inprocess_images_b32']:.2f}, 8 clients / 1 client {figures['grpc_clients_8_vs_1']:.2f}x")


def _rounded(figures: dict) -> dict:
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()}


def worst_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's worst value over ``runs`` (the largest where lower is better, else the smallest)."""
    worst = {}
    for key in runs[0]:
        values = [run[key] for run in runs if run[key] is not None]
        worst[key] = (max if key in LOWER_IS_BETTER else min)(values) if values else None
    return worst


def summary(runs: list[dict[str, float]]) -> dict:
    """The last JSON line: every run's figures, each figure's worst run, and whether each target holds in it."""
    worst = worst_of(runs)
    met = {str(target): target.met(worst[target.figure]) for target in TARGETS}
    return {"repeat": len(runs), "worst": _rounded(worst), "targets_met": met, "all_targets_met": all(met.values()),
            "runs": {key: [_rounded(run)[key] for run in runs] for key in runs[0]}}


def _big_batch(rng: np.random.Generator, megabytes: float) -> np.ndarray:
    """Random images whose row-format JSON is about ``megabytes`` MB."""
    one = len(orjson.dumps({"instances": rng.integers(0, 256, (1, 28, 28, 1)).astype(np.float32)},
                           option=orjson.OPT_SERIALIZE_NUMPY))
    return rng.integers(0, 256, (max(1, int(megabytes * 1e6 / one)), 28, 28, 1)).astype(np.float32)


def measure_run(version_dir: Path, signature, args: argparse.Namespace) -> dict[str, float]:
    """One whole measurement against a freshly started server; prints its table and returns its figures."""
    rng = np.random.default_rng(0)
    batches = {batch: rng.integers(0, 256, (batch, 28, 28, 1)).astype(np.float32) for batch in BATCHES}
    pngs = {batch: [tf.io.encode_png(image.astype(np.uint8)).numpy() for image in images]
            for batch, images in batches.items()}
    big = _big_batch(rng, args.big_mb)
    with tempfile.TemporaryDirectory() as temp, \
            serve(version_dir.parent, Path(temp) / "server.log") as (pid, rest_port, grpc_port):
        print(f"keras-itl serve pid {pid}: REST {HOST}:{rest_port}, gRPC {HOST}:{grpc_port}; "
              f"{os.cpu_count()} CPU core(s); small-cnn 28x28x1, 10 classes")
        openers = {batch: {"in-process": in_process(signature, images), "REST": rest(rest_port, images),
                           "REST b64": _rest_b64(rest_port, pngs[batch]), "gRPC": grpc_opener(grpc_port, images)}
                   for batch, images in batches.items()}
        for by_way in openers.values():
            check_agreement(by_way)
        cells = {(way, batch, clients): _measure(openers[batch][way], clients, args)
                 for way in WAYS for batch in BATCHES for clients in CLIENTS}
        beside_big, big_seconds = _measure_beside_big(openers[1]["REST"], rest(rest_port, big), args)
    _print_table(cells)
    print(f"\nREST batch 1, 1 client, while a {args.big_mb:g} MB request ({len(big)} images) is in flight: "
          f"p50 {beside_big.p50_ms:.2f} ms, p99 {beside_big.p99_ms:.2f} ms over {beside_big.requests} requests "
          f"(idle: p99 {cells['REST', 1, 1].p99_ms:.2f} ms); big requests took "
          + ", ".join(f"{seconds:.2f}" for seconds in big_seconds) + " s")
    print()
    figures = _figures(cells)
    _print_targets(figures)
    figures.update(small_p99_ms_idle=cells["REST", 1, 1].p99_ms, small_p99_ms_big_in_flight=beside_big.p99_ms,
                   small_requests_big_in_flight=beside_big.requests,
                   big_request_seconds=max(big_seconds) if big_seconds else None)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="timed requests per client and cell")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per client before each cell")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="time limit of each cell's timed part")
    parser.add_argument("--big-mb", type=float, default=16.0, help="size of the big request kept in flight")
    parser.add_argument("--repeat", type=int, default=1,
                        help="whole measurements (each with a fresh server); the last line reports the worst")
    args = parser.parse_args()
    began = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as temp:
        version_dir = export_classifier(Path(temp) / MODEL_NAME)
        signature = tf.saved_model.load(str(version_dir)).signatures[DEFAULT_SIGNATURE]
        # This process holds TensorFlow and Keras (for the export and the in-process calls), which a
        # client process does not; freeze them so that its full garbage collections, started by the
        # client threads' allocations, do not stall every client for ~100 ms (the server does the same).
        gc.collect()
        gc.freeze()
        for run in range(args.repeat):
            if args.repeat > 1:
                print(f"\n=== run {run + 1} of {args.repeat}")
            runs.append(measure_run(version_dir, signature, args))
            print(json.dumps(_rounded(runs[-1])))
    print(f"\n({time.perf_counter() - began:.0f} s in all)")
    print(json.dumps(summary(runs)))


if __name__ == "__main__":
    main()
