"""Keep Python's cycle collector off the objects that live as long as a loaded model.

TensorFlow and a loaded SavedModel leave hundreds of thousands of Python objects that stay until the
version is unloaded. Python's cycle collector walks every tracked object in each full collection, and
requests trigger full collections often: a JSON body becomes a nested list per image row, and every
few hundred requests' worth of those start one. With the benchmark's small model loaded, each full
collection held the GIL for ~150 ms, about a third of the server's time under eight clients, and
stalled every request in flight at once.

``freeze_long_lived`` collects once and then moves the survivors to the collector's permanent
generation (``gc.freeze``), so later collections only walk objects created since. The model manager
calls it after each change of the loaded versions, first unfreezing, so the objects of an unloaded
version are collected. Objects of requests in flight at that moment are frozen too; they are freed by
reference counting as usual, only a reference cycle among them would outlive its request.
"""
from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Collect garbage (unloaded versions' included), then exempt every surviving object from later collections."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
