"""Run one command as N local worker processes of a MultiWorkerMirroredStrategy cluster.

For trying multi-worker training on one machine: each process gets a ``TF_CONFIG`` naming N
workers on 127.0.0.1 (free ports) and its own index; worker 0 is the chief. On a real cluster an
orchestrator sets ``TF_CONFIG`` instead (see deploy/). Non-chief output is prefixed with the
worker's index; when one worker fails the others are stopped, since they would wait for it forever.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

STOP_GRACE_SECONDS = 10.0


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports that are free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_tf_configs(workers: int) -> list[str]:
    """The ``TF_CONFIG`` of each of ``workers`` processes on this machine."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(workers)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}) for index in range(workers)]


def _relay(stream, prefix: str) -> None:
    for line in stream:
        sys.stderr.write(prefix + line)
    sys.stderr.flush()


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch_local_workers(command: list[str], workers: int) -> int:
    """Run ``command`` as ``workers`` cooperating processes; return the first non-zero exit code, else 0."""
    processes, relays = [], []
    try:
        for index, tf_config in enumerate(local_tf_configs(workers)):
            env = {**os.environ, "TF_CONFIG": tf_config}
            if index == 0:  # the chief talks to the terminal directly
                processes.append(subprocess.Popen(command, env=env))
                continue
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            relay = threading.Thread(target=_relay, args=(process.stdout, f"[worker {index}] "), daemon=True)
            relay.start()
            processes.append(process)
            relays.append(relay)
        while True:
            codes = [process.poll() for process in processes]
            failed = [code for code in codes if code not in (None, 0)]
            if failed or all(code == 0 for code in codes):
                break
            time.sleep(0.2)
    finally:
        _stop(processes)
        for relay in relays:
            relay.join(timeout=STOP_GRACE_SECONDS)
    return failed[0] if failed else 0
