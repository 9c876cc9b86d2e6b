"""A user's own images: one sub-folder per class, as ``keras.utils.image_dataset_from_directory`` expects.

``root/<class>/**/<image>``; class names are the sorted sub-folder names and each example's id is
its path relative to ``root`` (``cat/001.png``), so reports name the user's own files. PNG, JPEG,
BMP and GIF files are read (a GIF's first frame); other files are ignored. A file with an image
extension that cannot be decoded is skipped with a warning and listed in ``skipped_files``: one bad
file must not stop a run. Images are brought to one size and channel count by ``stack_images``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_itl.datasets.containers import Split
from keras_itl.datasets.images import stack_images
from keras_itl.datasets.source import SourceData
from keras_itl.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

logger = logging.getLogger(__name__)


def load_folder(path: str) -> SourceData:
    """Read every image under ``path``'s class sub-folders; the source has no test split."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"folder dataset {path!r} does not exist or is not a directory")
    class_dirs = sorted(child for child in root.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not class_dirs:
        raise UserError(f"folder dataset {path!r} has no class sub-folders; expected {path}/<class name>/<image>")

    images, labels, ids, skipped = [], [], [], []
    for label, class_dir in enumerate(class_dirs):
        readable = 0
        for file in _image_files(class_dir):
            image = _decode(file)
            relative = file.relative_to(root).as_posix()
            if image is None:
                skipped.append(relative)
                continue
            images.append(image)
            labels.append(label)
            ids.append(relative)
            readable += 1
        if readable == 0:
            raise UserError(
                f"class folder {class_dir} has no readable images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder"
            )
    if skipped:
        logger.warning("skipped %d unreadable image file(s) in %s: %s", len(skipped), root, ", ".join(skipped))

    split = Split(stack_images(images), np.array(labels, dtype=np.int64), np.array(ids, dtype=object))
    return SourceData(
        name=f"folder:{root}",
        class_names=[class_dir.name for class_dir in class_dirs],
        train=split,
        skipped_files=skipped,
    )


def _image_files(class_dir: Path) -> list[Path]:
    """Image files anywhere below ``class_dir``, in sorted path order."""
    return sorted(
        file for file in class_dir.rglob("*") if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS
    )


def _decode(file: Path) -> np.ndarray | None:
    """The file's pixels as (H, W, C) uint8, or None when it cannot be read or decoded."""
    try:
        return tf.io.decode_image(file.read_bytes(), expand_animations=False, dtype=tf.uint8).numpy()
    except (OSError, tf.errors.InvalidArgumentError):
        return None
