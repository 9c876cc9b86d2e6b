"""A real ``keras-itl serve`` subprocess for tests, and small HTTP helpers to talk to it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``keras-itl serve`` subprocess with its ports and log."""

    def __init__(self, args: list[str], log_path: Path):
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from keras_itl.cli.main import main; main()", "serve",
             "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_available(self, model: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log()}"
            try:
                status = get_json(f"{self.url}/v1/models/{model}")[1]
                if any(s["state"] == "AVAILABLE" for s in status.get("model_version_status", [])):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"model {model} not available within {timeout}s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def request(url: str, body: bytes | None = None, method: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(url: str) -> tuple[int, dict]:
    status, body = request(url)
    return status, json.loads(body)


def post(url: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, raw = request(url, body)
    return status, json.loads(raw)
