"""Images as data URLs, so report.html carries them inside: training-image thumbnails and the run's PNG plots."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 64  # larger training images are shrunk to this on their longer side; the page shows them at 64 px


def data_url(png: bytes) -> str:
    """A ``data:image/png`` URL holding ``png``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail(image: np.ndarray) -> str:
    """A uint8 HxWx1 or HxWx3 image as a PNG data URL, at most THUMBNAIL_SIDE pixels a side."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return data_url(buffer.getvalue())


def file_data_url(path: str | os.PathLike) -> str | None:
    """The PNG file at ``path`` as a data URL; None when the run did not write it."""
    path = Path(path)
    return data_url(path.read_bytes()) if path.is_file() else None
