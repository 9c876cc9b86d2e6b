"""Server-side batching (issue 13): 8 clients at batch 1, requests/s with --enable_batching against without.

A keras-itl export (by default ResNet50 at 32x32x3 with random weights, the paper's architecture; any
``--arch``) is served by two real `keras-itl serve` subprocesses at once, one started with
``--enable_batching`` and a batching parameters file, one without. Clients are threads of this process
(as in serving_latency.py, whose helpers this reuses); each keeps one batch-1 request in flight over
its own keep-alive REST connection or gRPC channel.

The machine may be shared, so the two servers are measured in alternating rounds (unbatched, batched,
then batched, unbatched, ...) and each way's figures are summed over its rounds: a change of load
during the run hits both alike. Besides requests/s and p50/p99 latency it reports the server's CPU
time per request (from /proc), which depends much less on what else runs on the machine than wall
time does. Answers of both servers are checked against an in-process call before anything is timed.

Target: REST requests/s with batching >= 2x without. The last line printed is one JSON object.

    python benchmarks/serving_batching.py [--arch resnet50 --image-size 32] [--rounds 3] [--seconds 6]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from serving_latency import (
    Cell,
    OpenCaller,
    cell_of,
    check_agreement,
    concurrent_spans,
    export_classifier,
    grpc_opener,
    in_process,
    rest,
    serve,
)

from keras_itl.serving_layout import DEFAULT_SIGNATURE

TARGET = 2.0
MODES = ("unbatched", "batched")
WAYS = ("REST", "gRPC")


@dataclass
class Tally:
    """What the rounds of one (mode, way) found: request spans, timed seconds and server CPU seconds."""

    spans: list
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def cell(self) -> Cell:
        return cell_of(self.spans, self.seconds)

    def cpu_ms_per_request(self) -> float:
        return 1000.0 * self.cpu_seconds / len(self.spans)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _batching_file(path: Path, args: argparse.Namespace) -> Path:
    path.write_text(f"max_batch_size {{ value: {args.max_batch_size} }}\n"
                    f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
                    f"num_batch_threads {{ value: {args.num_batch_threads} }}\n")
    return path


def _measure(openers: dict[tuple[str, str], OpenCaller], pids: dict[str, int],
             args: argparse.Namespace) -> dict[tuple[str, str], Tally]:
    """Alternating rounds of every (mode, way); spans, seconds and server CPU summed per (mode, way)."""
    tallies = {key: Tally([]) for key in openers}
    for round_number in range(args.rounds):
        for way in WAYS:
            for mode in MODES if round_number % 2 == 0 else MODES[::-1]:
                cpu_before = cpu_seconds(pids[mode])
                spans = concurrent_spans(openers[mode, way], args.clients, args.warmup, 10**9, args.seconds)
                tally = tallies[mode, way]
                tally.spans += spans
                tally.seconds += max(end for _, end in spans) - min(start for start, _ in spans)
                tally.cpu_seconds += cpu_seconds(pids[mode]) - cpu_before
    return tallies


def _report(tallies: dict[tuple[str, str], Tally], args: argparse.Namespace, load: tuple[float, float]) -> dict:
    print(f"{'server':<11}{'way':<6}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU ms/req':>19}")
    for (mode, way), tally in tallies.items():
        cell = tally.cell()
        print(f"{mode:<11}{way:<6}{cell.requests:>9}{cell.requests_per_second:>9.1f}{cell.p50_ms:>9.1f}"
              f"{cell.p99_ms:>9.1f}{tally.cpu_ms_per_request():>19.2f}")
    figures: dict = {"arch": args.arch, "image_size": args.image_size, "clients": args.clients,
                     "max_batch_size": args.max_batch_size, "batch_timeout_micros": args.batch_timeout_micros,
                     "num_batch_threads": args.num_batch_threads, "load_average_start_end": load}
    print()
    for way in WAYS:
        unbatched, batched = tallies["unbatched", way], tallies["batched", way]
        speedup = batched.cell().requests_per_second / unbatched.cell().requests_per_second
        cpu_saving = unbatched.cpu_ms_per_request() / batched.cpu_ms_per_request()
        verdict = "met" if speedup >= TARGET else "NOT met"
        print(f"{way}: requests/s batched / unbatched {speedup:.2f}x (target >= {TARGET:g}: {verdict}); "
              f"server CPU per request unbatched / batched {cpu_saving:.2f}x")
        key = way.lower()
        figures.update({f"{key}_batched_vs_unbatched": speedup,
                        f"{key}_cpu_per_request_unbatched_vs_batched": cpu_saving})
        for mode, tally in (("unbatched", unbatched), ("batched", batched)):
            cell = tally.cell()
            figures.update({f"{key}_{mode}_requests_per_second": cell.requests_per_second,
                            f"{key}_{mode}_p50_ms": cell.p50_ms, f"{key}_{mode}_p99_ms": cell.p99_ms})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50", help="keras-itl architecture to export (random weights)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server and way")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds of each round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per client before each round")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout-micros", type=int, default=10000)
    parser.add_argument("--num-batch-threads", type=int, default=1)
    args = parser.parse_args()
    began, load_start = time.perf_counter(), os.getloadavg()[0]
    images = np.random.default_rng(0).integers(0, 256, (1, args.image_size, args.image_size, args.channels))
    images = images.astype(np.float32)
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        version_dir = export_classifier(temp / "model", args.arch, args.image_size, args.channels)
        reference = in_process(tf.saved_model.load(str(version_dir)).signatures[DEFAULT_SIGNATURE], images)
        batching_file = _batching_file(temp / "batching.config", args)
        batching = ("--enable_batching", "--batching_parameters_file", str(batching_file))
        with serve(version_dir.parent, temp / "unbatched.log") as (pid, rest_port, grpc_port), \
                serve(version_dir.parent, temp / "batched.log", batching) as (batched_pid, batched_rest, batched_grpc):
            print(f"{args.arch} {args.image_size}x{args.image_size}x{args.channels}, "
                  f"{args.clients} clients at batch 1, "
                  f"{os.cpu_count()} CPU core(s), load average {load_start:.1f}; batched server: max_batch_size "
                  f"{args.max_batch_size}, batch_timeout_micros {args.batch_timeout_micros}, num_batch_threads "
                  f"{args.num_batch_threads}")
            openers = {("unbatched", "REST"): rest(rest_port, images),
                       ("unbatched", "gRPC"): grpc_opener(grpc_port, images),
                       ("batched", "REST"): rest(batched_rest, images),
                       ("batched", "gRPC"): grpc_opener(batched_grpc, images)}
            named = {f"{mode} {way}": opener for (mode, way), opener in openers.items()}
            check_agreement({"in-process": reference, **named})
            tallies = _measure(openers, {"unbatched": pid, "batched": batched_pid}, args)
    figures = _report(tallies, args, (round(load_start, 1), round(os.getloadavg()[0], 1)))
    print(f"\n({time.perf_counter() - began:.0f} s in all)")
    print(json.dumps({key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()}))


if __name__ == "__main__":
    main()
