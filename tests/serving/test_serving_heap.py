"""The model manager keeps loaded versions out of the garbage collector's walks, and still frees unloaded ones."""
from __future__ import annotations

import gc

import pytest

from keras_itl.serving.model_config import single_model
from keras_itl.serving.model_manager import ModelManager
from tests.serving.serving_helpers import save_affine

# A version swap of the affine model leaves ~700 objects in reference cycles; freezing without first
# unfreezing would keep them for good. What else a swap leaves frozen (caches) is a few objects.
LEFT_PER_SWAP = 100


@pytest.fixture
def unfrozen():
    """Give the objects frozen by a test back to the collector, so later tests collect as usual."""
    yield
    gc.unfreeze()


def test_a_loaded_version_is_frozen_and_an_unloaded_one_collected(tmp_path, unfrozen):
    base = tmp_path / "affine"
    base.mkdir()
    save_affine(base / "1", 1.0, 1.0)
    manager = ModelManager(single_model("affine", base))
    try:
        manager.poll_once()
        module_id = id(manager.resolve("affine").module)
        assert gc.get_freeze_count() > 0
        assert all(id(obj) != module_id for obj in gc.get_objects())  # the generations a collection walks
        frozen = []
        for version in (2, 3):
            save_affine(base / str(version), 1.0, float(version))
            manager.poll_once()
            assert manager.resolve("affine").version == version
            frozen.append(gc.get_freeze_count())
        assert frozen[1] - frozen[0] < LEFT_PER_SWAP, "an unloaded version's objects stayed frozen"
    finally:
        manager.stop()
