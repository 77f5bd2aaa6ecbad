"""Decoding one image into a project's input tensor: the preprocessing every upload path shares.

Images are decoded with Pillow, converted to grey (C = 1, ITU-R 601-2 luma) or RGB (C = 3) and
resized to H x W (bilinear), the same preprocessing as `data/ingest.py`'s zip uploads.
"""

from __future__ import annotations

from typing import BinaryIO

import re

import numpy as np

DEFAULT_MAX_PIXELS = 16_000_000  # per decoded image, before resizing (decompression bombs)


class UndecodableImage(ValueError):
    """The bytes are not a PNG or JPEG image this server can decode within its limits."""


def describe_preprocessing(shape: tuple[int, int, int]) -> str:
    h, w, c = shape
    return f"resize to {h}x{w} bilinear, {'grey (L)' if c == 1 else 'RGB'}"


def decode_image(source: BinaryIO, shape: tuple[int, int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """uint8 (H, W, C) pixels of the image in `source`; UndecodableImage if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    h, w, c = shape
    if c not in (1, 3):
        raise UndecodableImage(f"image input must have 1 or 3 channels, the network has {c}")
    try:
        with Image.open(source) as img:
            if img.format not in ("PNG", "JPEG"):
                raise UndecodableImage(f"{img.format or 'unknown'} images are not accepted; send PNG or JPEG")
            if img.width * img.height > max_pixels:
                raise UndecodableImage(f"{img.width}x{img.height} pixels; at most {max_pixels}")
            img.load()
            arr = np.asarray(img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR))
    except UnidentifiedImageError:
        raise UndecodableImage("not a PNG or JPEG image: its bytes are in no image format this server reads") from None
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        if isinstance(exc, UndecodableImage):
            raise
        raise UndecodableImage(f"not a readable PNG or JPEG image: {_plain(exc)}") from None
    return arr.reshape(h, w, c).astype(np.uint8, copy=False)


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _plain(exc: BaseException) -> str:
    """The decoder's reason without Python object reprs ("<_io.BytesIO object at 0x...>"), which tell a client
    nothing and leak server internals."""
    text = _OBJECT_REPR.sub("the image", str(exc)).strip()
    return text or type(exc).__name__
