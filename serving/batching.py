"""Server-side batching, as TF Serving's ``--enable_batching``: concurrent requests share one model call.

Each model call has a fixed cost (dispatch, kernel launch, Python) on top of the per-row work, so eight
clients sending one image each get more done when their rows run as one batch of eight. Requests for
the same signature whose inputs agree in dtype and in every dimension but the first wait in a queue;
a batch is formed when ``max_batch_size`` rows are waiting or the oldest request has waited
``batch_timeout_micros``, padded (by repeating its last row) up to the next of ``allowed_batch_sizes``,
run once by one of ``num_batch_threads`` threads, and its outputs split back by rows. More than
``max_enqueued_batches`` batches' worth of waiting rows is refused as UNAVAILABLE (503), as TF Serving
does. Requests are checked before they queue, so a bad request fails alone; requests that cannot be
batched (no batch dimension, larger than a batch) run on their own. One batcher serves REST and gRPC.
Its threads are named after ``thread_pool_name``, which also labels the queuing-latency metric.
``pad_variable_length_inputs`` (padding inputs that differ beyond the first dimension) is refused:
outputs would need un-padding that a SavedModel's signature does not describe.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from keras_itl.serving.batching_parameters import BatchingOptions
from keras_itl.serving.errors import Unavailable
from keras_itl.serving.metrics import record_batch, record_dequeued, record_queued
from keras_itl.serving.prediction import (
    call_signature,
    check_inputs,
    check_output_filter,
    run_prediction,
    select_outputs,
)
from keras_itl.serving.signatures import Signature

log = logging.getLogger(__name__)


@dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    wanted: list[str]
    arrived: float
    result: Future = field(default_factory=Future)


@dataclass
class _Queue:
    signature: Signature
    model_name: str | None
    tasks: deque = field(default_factory=deque)
    rows: int = 0

    def take(self, max_rows: int) -> list[_Task]:
        """The oldest tasks that fit in ``max_rows`` rows (at least one)."""
        taken = [self.tasks.popleft()]
        while self.tasks and sum(t.rows for t in taken) + self.tasks[0].rows <= max_rows:
            taken.append(self.tasks.popleft())
        self.rows -= sum(task.rows for task in taken)
        return taken


def _batch_rows(signature: Signature, inputs: dict[str, np.ndarray]) -> int | None:
    """The rows of a request whose every input has the same leading, variable-size batch dimension."""
    rows = {value.shape[0] if value.ndim else None for value in inputs.values()}
    first_dims = {spec.shape[0] if spec.shape.rank else "scalar" for spec in signature.inputs.values()}
    if len(rows) != 1 or None in rows or first_dims != {None}:
        return None
    return rows.pop()


class Batcher:
    """Queues of requests per signature and input layout, and the threads that run them as batches."""

    def __init__(self, options: BatchingOptions):
        self.options = options
        self._condition = threading.Condition()
        self._queues: dict[tuple, _Queue] = {}
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"{options.thread_pool_name}-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Let the batch threads finish the batch in hand and exit; requests still queued fail as UNAVAILABLE."""
        with self._condition:
            self._stopped = True
            for queue in self._queues.values():
                for task in queue.tasks:
                    task.result.set_exception(Unavailable("the server is shutting down"))
            self._queues.clear()
            self._condition.notify_all()

    def predict(self, signature: Signature, inputs: dict[str, np.ndarray], output_filter: Iterable[str] = (),
                model_name: str | None = None) -> dict[str, np.ndarray]:
        """Like ``run_prediction``, with the model call shared by the requests waiting at the same time."""
        rows = _batch_rows(signature, inputs)
        if rows is None or rows > self.options.max_batch_size:
            return run_prediction(signature, inputs, output_filter, model_name)
        check_inputs(signature, inputs)
        task = _Task(inputs, rows, check_output_filter(signature, output_filter), time.monotonic())
        record_queued(rows)
        layout = tuple((name, value.dtype.str, value.shape[1:]) for name, value in sorted(inputs.items()))
        with self._condition:
            queue = self._queues.setdefault((id(signature), layout), _Queue(signature, model_name))
            if queue.rows + rows > self.options.max_enqueued_batches * self.options.max_batch_size:
                raise Unavailable("The batch scheduler queue is full; retry later")
            queue.tasks.append(task)
            queue.rows += rows
            self._condition.notify()
        return task.result.result()

    def _next_batch(self) -> tuple[_Queue, list[_Task]] | None:
        """A batch that is due now (full, or its oldest request waited long enough); None after ``stop``."""
        timeout = self.options.batch_timeout_micros / 1e6
        with self._condition:
            while not self._stopped:
                now, wait = time.monotonic(), None
                for key, queue in list(self._queues.items()):
                    due = queue.tasks[0].arrived + timeout
                    if queue.rows >= self.options.max_batch_size or now >= due:
                        tasks = queue.take(self.options.max_batch_size)
                        if not queue.tasks:  # forget empty queues: they hold versions that may be unloaded
                            del self._queues[key]
                        return queue, tasks
                    wait = due - now if wait is None else min(wait, due - now)
                self._condition.wait(wait)
        return None

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(*batch)

    def _run(self, queue: _Queue, tasks: list[_Task]) -> None:
        now = time.monotonic()
        record_dequeued(self.options.thread_pool_name, [now - task.arrived for task in tasks])
        if len(tasks) > 1:
            try:
                self._run_together(queue, tasks)
                return
            except Exception:  # one failing batch must not fail requests that succeed on their own
                log.debug("batch of %d requests failed; running them one by one", len(tasks), exc_info=True)
        for task in tasks:
            record_batch(task.rows, task.rows)
            try:
                outputs = call_signature(queue.signature, task.inputs, queue.model_name)
                task.result.set_result(select_outputs(outputs, task.wanted))
            except Exception as error:
                task.result.set_exception(error)

    def _run_together(self, queue: _Queue, tasks: list[_Task]) -> None:
        rows = sum(task.rows for task in tasks)
        size = self.options.padded_size(rows)
        merged = {}
        for name in tasks[0].inputs:
            joined = np.concatenate([task.inputs[name] for task in tasks])
            padding = np.repeat(joined[-1:], size - rows, axis=0)
            merged[name] = np.concatenate([joined, padding]) if size > rows else joined
        record_batch(rows, size)
        outputs = call_signature(queue.signature, merged, queue.model_name)
        if any(np.ndim(value) == 0 or len(value) != size for value in outputs.values()):
            raise ValueError("outputs without the batch dimension cannot be split")
        start = 0
        for task in tasks:
            part = {name: value[start:start + task.rows] for name, value in outputs.items()}
            task.result.set_result(select_outputs(part, task.wanted))
            start += task.rows
