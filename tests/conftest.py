"""Test session set-up: two logical CPU devices, so distributed training is tested for real.

Logical devices must be configured before TensorFlow runs its first op, hence at import time here.
"""
import os
import socket
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from keras_itl.determinism import THREADS_ENV  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
# The thread pools every keras-itl run fixes (keras_itl.determinism): one intra-op and one inter-op
# thread. Set here, before the first op, so every test runs with them - and two test processes on a
# 2-core machine do not each start a pool per core.
tf.config.threading.set_intra_op_parallelism_threads(int(os.environ.get(THREADS_ENV, "1")))
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
import pytest  # noqa: E402

from keras_itl.experiment import run_experiment  # noqa: E402
from keras_itl.presets import get_preset  # noqa: E402
from keras_itl.training import make_strategy  # noqa: E402
from tests.helpers import HEAVY_ARCHS  # noqa: E402

# Session fixtures that train: the tests sharing one are dealt to the same worker, so it trains
# once per test run rather than once per worker.
SHARED_TRAINING = ("tiny_noisy_experiment", "trained_digits_run")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One xdist worker more than the machine has cores (``-n auto``; ``--maxprocesses`` still caps it).

    Each worker runs TensorFlow on one thread (above), and many tests spend part of their time waiting
    - for a server or worker subprocess to start, for a timeout they test - so with one worker per core
    a core sat idle whenever its worker waited: on 2 cores, 3 workers ran the suite in 677 s where 2
    took 740 s (docs/results.md).
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):  # xdist's own override, honoured as xdist does
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return (os.cpu_count() or 1) + 1


def _expected_cost(item: pytest.Item) -> int:
    """2 for an end-to-end test of a heavy architecture, 1 for any other slow test, else 0."""
    if item.get_closest_marker("slow") is None:
        return 0
    return 2 if any(arch in item.nodeid for arch in HEAVY_ARCHS) else 1


def _xdist_group(item: pytest.Item) -> str | None:
    """The name of the item's ``xdist_group`` mark: a module whose tests share a module-scoped server."""
    mark = item.get_closest_marker("xdist_group")
    return (mark.args[0] if mark.args else mark.kwargs["name"]) if mark else None


def _worksteal_shares(count: int, workers: int) -> list[int]:
    """How many tests of the collection ``--dist worksteal`` first sends to each worker, in order."""
    shares = []
    for remaining in range(workers, 0, -1):
        shares.append((count - sum(shares)) // remaining)
    return shares


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first, dealt round-robin into one block per xdist worker; each xdist_group whole at a block's front.

    ``--dist worksteal`` hands the n-th block of the collection to the n-th worker, and an idle
    worker then takes the back half (the short tests) of a busy one's queue. Dealing the long tests
    out this way starts every worker on its share of them: sorted into one block, the two heavy
    architectures ran back to back on one worker while the other had nothing long left to take.
    worksteal ignores ``xdist_group`` marks, so a grouped module (one server subprocess for all its
    tests) is kept whole here: it opens a block, which steals (from a queue's back) reach last, and
    every block is filled to exactly the share worksteal sends, so no group straddles two workers.
    Dealt round-robin instead, such a module's server started once per worker, and again each time
    another module's test ran between two of its tests.
    """
    groups: dict[str, list[pytest.Item]] = {}  # each in collection order: its tests may rely on it
    for item in items:
        if (group := _xdist_group(item)) is not None:
            groups.setdefault(group, []).append(item)
    items.sort(key=_expected_cost, reverse=True)  # stable: collection order within a cost
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    blocks: list[list[pytest.Item]] = [[] for _ in range(workers)]
    room = _worksteal_shares(len(items), workers)
    for members in sorted(groups.values(), key=len, reverse=True):
        block = room.index(max(room))
        blocks[block] += members
        room[block] -= len(members)
    homes: dict[str, int] = {}  # shared training fixture -> the block of its first test
    turn = 0
    for item in items:
        if _xdist_group(item) is not None:
            continue
        shared = next((name for name in SHARED_TRAINING if name in item.fixturenames), None)
        if shared in homes:
            block = homes[shared]
        elif _expected_cost(item):  # the long tests round-robin; the short ones even the blocks up to their shares
            block, turn = turn % workers, turn + 1
        else:
            block = room.index(max(room))
        if shared:
            homes[shared] = block
        blocks[block].append(item)
        room[block] -= 1
    items[:] = [item for block in blocks for item in block]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep pretrained-source caches out of the user's home directory (session-wide: before any
    session fixture pretrains a source). One cache for the whole test run, shared by the xdist workers
    (their base temp directories sit side by side in the run's): a digits source the tests pretrain
    at 12x12 is pretrained once, by whichever test first asks, and reused everywhere after (the
    cache's lock makes the other worker wait for it rather than pretrain it again)."""
    base = tmp_path_factory.getbasetemp()
    run_root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_ITL_CACHE", str(run_root / "keras-itl-cache"))
        yield


@pytest.fixture(scope="session")
def tiny_noisy_experiment(tmp_path_factory) -> SimpleNamespace:
    """The digits-noisy preset at a tiny budget (60 training images of 12x12, two epochs, no separate head
    phase), every row, best model exported: run once per test run. tests/experiment/test_experiment.py checks it
    and serves its export; tests/training/test_determinism.py reruns part of it and compares the numbers."""
    preset = replace(get_preset("digits-noisy"), max_train_examples=60, image_size=12, epochs=2, head_epochs=0,
                     source_epochs=1)
    root = tmp_path_factory.mktemp("tiny-digits-noisy")
    # one replica, as a user's CPU run (two replicas: tests/training/test_training.py and the CLI tests); a third faster
    result = run_experiment(preset, root / "out", export_base=root / "saved", strategy=make_strategy(["/cpu:0"]),
                            verbose=False)
    keras.backend.clear_session()
    return SimpleNamespace(preset=preset, result=result, out=root / "out", saved=root / "saved")


@pytest.fixture(autouse=True)
def _release_models_after_slow_tests(request):
    """Reset Keras' global state and collect garbage after each end-to-end test, so a worker that
    runs many experiments does not carry every one's models and traced graphs into the next."""
    yield
    if request.node.get_closest_marker("slow"):
        keras.backend.clear_session()


@pytest.fixture(scope="session")
def trained_digits_run(tmp_path_factory) -> Path:
    """The trained digits model of the suite: ``keras-itl train`` from scratch on 120 digits at 16x16
    for four epochs, exported as ``digits``; ``<root>/run`` is the run directory, ``<root>/saved`` the
    export base. Tests that write next to it (blessings, pushes) take a copy (``shutil.copytree``)."""
    from click.testing import CliRunner

    from keras_itl.cli.main import main

    root = tmp_path_factory.mktemp("trained-digits")
    result = CliRunner().invoke(main, ["train", "--target", "digits", "--image-size", "16", "--max-train-examples",
                                       "120", "--batch-size", "32", "--epochs", "4", "--lr", "0.003", "--output",
                                       str(root / "run"), "--export", "digits", "--export-base", str(root / "saved"),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    keras.backend.clear_session()
    return root


@pytest.fixture
def unreachable_network(monkeypatch):
    """Every host name fails to resolve at once, as on a machine without network, whatever machine runs the test."""
    def unresolvable(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
