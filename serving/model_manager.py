"""Keep the served versions of each model in step with its base directory, without interrupting requests.

A child directory of a model's base path is a version when its name is an integer. A version is a
candidate only once it holds ``saved_model.pb`` (so a directory still being written is never served);
a candidate that fails to load is recorded as ``END`` with its error, and the versions chosen before
keep serving. As in TF Serving, a failed load is retried up to ``max_num_load_retries`` times, every
``load_retry_interval`` (a ``saved_model.pb`` copied before its ``variables/`` loads once they arrive);
after that it is skipped until its ``saved_model.pb`` changes, which starts the count again. New versions are
loaded before
old ones are unloaded, and requests keep a reference to the version they resolved, so a swap never
fails a request in flight.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from keras_itl.serving.errors import ServableNotFound
from keras_itl.serving.heap import freeze_long_lived
from keras_itl.serving.metrics import record_load
from keras_itl.serving.model_config import ModelConfig
from keras_itl.serving.signatures import Signature, signatures_of
from keras_itl.serving.warmup import replay_warmup
from keras_itl.serving_layout import SAVED_MODEL_FILES, version_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedVersion:
    """A loaded, servable version; ``module`` keeps the variables its signatures read alive."""

    name: str
    version: int
    signatures: dict[str, Signature]
    module: object


@dataclass(frozen=True)
class LoadRetries:
    """TF Serving's ``--max_num_load_retries`` (5) and ``--load_retry_interval_micros`` (one minute)."""

    max_retries: int = 5
    interval_seconds: float = 60.0


@dataclass(frozen=True)
class _Failure:
    """A version whose load failed: its model file's fingerprint, failed attempts, and when to retry."""

    fingerprint: tuple[int, int]
    attempts: int
    retry_at: float


@dataclass(frozen=True)
class VersionStatus:
    """A version's lifecycle state as TF Serving names it, with the error of a failed load."""

    version: int
    state: str
    error: str = ""


def load_saved_model(name: str, version: int, path: Path) -> LoadedVersion:
    """Load one version directory and replay its warmup requests; raises when it is not usable."""
    module = tf.saved_model.load(str(path))
    signatures = signatures_of(module)
    if not signatures:
        raise ValueError(f"SavedModel {path} has no signatures")
    warmed = replay_warmup(path, signatures)
    if warmed:
        log.info("%s version %d: replayed %d warmup requests", name, version, warmed)
    return LoadedVersion(name, version, signatures, module)


def _model_file(directory: Path) -> Path | None:
    return next((directory / f for f in SAVED_MODEL_FILES if (directory / f).is_file()), None)


def scan_versions(base_path: Path) -> dict[int, tuple[Path, tuple[int, int]]]:
    """Complete version directories under ``base_path``: version → (path, fingerprint of its model file)."""
    found = {}
    try:
        children = list(base_path.iterdir())
    except OSError:
        return found
    for child in children:
        version = version_number(child.name)
        if version is None or not child.is_dir():
            continue
        model_file = _model_file(child)
        if model_file is None:
            continue
        try:
            stat = model_file.stat()
        except OSError:
            continue
        found[version] = (child, (stat.st_mtime_ns, stat.st_size))
    return found


class _Model:
    """Mutable serving state of one model; guarded by the manager's lock."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.available: dict[int, LoadedVersion] = {}
        self.statuses: dict[int, VersionStatus] = {}
        self.failed: dict[int, _Failure] = {}


class ModelManager:
    """Serves the versions chosen by each model's policy and reloads them as the base paths change."""

    def __init__(self, models: list[ModelConfig], poll_seconds: float = 1.0, retries: LoadRetries = LoadRetries()):
        self._models = {config.name: _Model(config) for config in models}
        self._poll_seconds = poll_seconds
        self._retries = retries
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Load what is on disk now, then keep polling in a daemon thread until ``stop``."""
        self.poll_once()
        self._thread = threading.Thread(target=self._poll_loop, name="model-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (in-flight loads finish first) and drop every loaded version."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for model in self._models.values():
                model.available.clear()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the poller; the next one retries
                log.exception("polling model directories failed")

    # -- reconciliation ------------------------------------------------------------------------
    def poll_once(self) -> None:
        """Bring every model's loaded versions in line with its directory and version policy.

        After any load or unload, the long-lived objects are frozen out of the garbage collector's
        reach (see ``heap``).
        """
        changed = False
        for model in self._models.values():
            if self._stop.is_set():
                break
            changed |= self._reconcile(model)
        if changed:
            freeze_long_lived()

    def _reconcile(self, model: _Model) -> bool:
        """Load and unload versions of ``model``; whether any version was loaded or unloaded."""
        on_disk = scan_versions(model.config.base_path)
        with self._lock:
            for version in list(model.failed):
                if version not in on_disk or on_disk[version][1] != model.failed[version].fingerprint:
                    del model.failed[version]
        changed = False
        while True:
            with self._lock:
                now = time.monotonic()
                candidates = [v for v in on_disk if self._loadable(model.failed.get(v), now)]
                wanted = model.config.policy.choose(candidates)
                to_load = [v for v in wanted if v not in model.available]
            if not to_load:
                break
            for version in to_load:
                changed |= self._load(model, version, *on_disk[version])
        with self._lock:
            for version in [v for v in model.available if v not in wanted]:
                self._set_status(model, version, "UNLOADING")
                del model.available[version]
                self._set_status(model, version, "END")
                log.info("unloaded %s version %d", model.config.name, version)
                changed = True
        return changed

    def _load(self, model: _Model, version: int, path: Path, fingerprint: tuple[int, int]) -> bool:
        """Load one version; whether it loaded (a failure is recorded in its status)."""
        name = model.config.name
        with self._lock:
            self._set_status(model, version, "LOADING")
        started = time.perf_counter()
        try:
            loaded = load_saved_model(name, version, path)
        except Exception as error:  # any load failure is the model's problem, reported in its status
            record_load(path, None)
            message = f"{type(error).__name__}: {error}".strip()
            log.error("failed to load %s version %d: %s", name, version, message)
            with self._lock:
                previous = model.failed.get(version)
                attempts = previous.attempts + 1 if previous and previous.fingerprint == fingerprint else 1
                model.failed[version] = _Failure(fingerprint, attempts,
                                                 time.monotonic() + self._retries.interval_seconds)
                self._set_status(model, version, "END", message)
            return False
        record_load(path, time.perf_counter() - started)
        with self._lock:
            model.failed.pop(version, None)
            model.available[version] = loaded
            self._set_status(model, version, "AVAILABLE")
        log.info("serving %s version %d", name, version)
        return True

    def _loadable(self, failure: _Failure | None, now: float) -> bool:
        """Whether a version may be loaded now: never failed, or due for one of its retries."""
        return failure is None or (failure.attempts <= self._retries.max_retries and now >= failure.retry_at)

    @staticmethod
    def _set_status(model: _Model, version: int, state: str, error: str = "") -> None:
        model.statuses[version] = VersionStatus(version, state, error)

    # -- queries -------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        """The names of the served models."""
        return list(self._models)

    def metric_name(self, name: str) -> str:
        """``name`` as a metric label when it is a served model; one label for all others, so clients
        asking for random names cannot grow the metrics without bound."""
        return name if name in self._models else "<unknown model>"

    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            raise ServableNotFound(f"Servable not found for request: Latest({name})")
        return model

    def _label_version(self, model: _Model, label: str) -> int:
        version = model.config.labels.get(label)
        if version is None:
            raise ServableNotFound(f"Unrecognized servable version label: {label}")
        return version

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The loaded version a request addresses (latest when neither version nor label is given)."""
        with self._lock:
            model = self._model(name)
            if label is not None:
                version = self._label_version(model, label)
            if version is None:
                if not model.available:
                    raise ServableNotFound(f"Servable not found for request: Latest({name})")
                return model.available[max(model.available)]
            loaded = model.available.get(version)
            if loaded is None:
                raise ServableNotFound(f"Servable not found for request: Specific({name}, {version})")
            return loaded

    def statuses(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """Status of every version the manager has seen (newest first), or of the addressed one."""
        with self._lock:
            model = self._models.get(name)
            if model is None or not model.statuses:
                raise ServableNotFound(f"Could not find any versions of model {name}")
            if label is not None:
                version = self._label_version(model, label)
            if version is None:
                return [model.statuses[v] for v in sorted(model.statuses, reverse=True)]
            if version not in model.statuses:
                raise ServableNotFound(f"Could not find version {version} of model {name}")
            return [model.statuses[version]]
