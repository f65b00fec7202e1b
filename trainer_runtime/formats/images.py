"""Image probing: is this file a whole, decodable image of an allowed format, and how big is it?

`probe_image` is the thorough check used when a dataset is uploaded (it decodes every pixel, so a
truncated JPEG/PNG is caught); `read_image_size` is the cheap header-only read used by importers.
Both raise `DatasetFormatError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError

from trainer_runtime.errors import DatasetFormatError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
"""Lower-case file extensions (with the dot) that are treated as images."""

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF"})
# Pillow names some camera JPEGs "MPO" (multi-picture JPEG); they decode like JPEG.
_FORMAT_ALIASES = {"MPO": "JPEG"}

DEFAULT_MAX_PIXELS = 100_000_000
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageInfo:
    """What reading an image file found: pixel size, format, file size and sha256."""

    width: int
    height: int
    format: str
    size_bytes: int
    sha256: str


def is_image_name(name: str) -> bool:
    """True when the file name has one of `IMAGE_EXTENSIONS` (case-insensitive)."""
    dot = name.rfind(".")
    return dot >= 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _open_checked(path: Path, label: str, max_pixels: int) -> tuple[Image.Image, str]:
    """Open lazily (header only) and check format and pixel count; caller closes the image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DatasetFormatError(
            f"image is too large (decompression bomb?): {exc}; the limit is {max_pixels} pixels",
            file=label,
        ) from None
    except UnidentifiedImageError:
        raise DatasetFormatError("not an image (Pillow cannot identify the file)", file=label) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetFormatError(f"cannot read image: {exc}", file=label) from None
    fmt = _FORMAT_ALIASES.get(im.format or "", im.format or "")
    if fmt not in ALLOWED_FORMATS:
        im.close()
        allowed = ", ".join(sorted(ALLOWED_FORMATS))
        raise DatasetFormatError(f"image format {im.format or 'unknown'} is not allowed ({allowed})", file=label)
    width, height = im.size
    if width <= 0 or height <= 0:
        im.close()
        raise DatasetFormatError(f"image has an empty size {width}x{height}", file=label)
    if width * height > max_pixels:
        im.close()
        raise DatasetFormatError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
            " (decompression bomb?)",
            file=label,
        )
    return im, fmt


def read_image_size(path: Path, *, rel: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the image header only: cheap, does not decode pixels."""
    label = rel or path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetFormatError(f"cannot read image file: {exc.strerror or exc}", file=label) from None
    if size == 0:
        raise DatasetFormatError("image file is empty (0 bytes)", file=label)
    im, _ = _open_checked(path, label, max_pixels)
    with im:
        return im.size


def probe_image(path: Path, *, rel: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check that `path` is a complete image of an allowed format and return its facts.

    Rejects (each as `DatasetFormatError(file=rel or name)`): missing or 0-byte files, files Pillow
    cannot identify, formats outside `ALLOWED_FORMATS`, images over `max_pixels`, and truncated or
    corrupt files (``verify()`` and then a full ``load()``; GIF/TIFF: the first frame).
    """
    label = rel or path.name
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # pragma: no cover - someone changed the global
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must be False to detect truncated images")
    try:
        size_bytes = path.stat().st_size
    except OSError as exc:
        raise DatasetFormatError(f"cannot read image file: {exc.strerror or exc}", file=label) from None
    if size_bytes == 0:
        raise DatasetFormatError("image file is empty (0 bytes)", file=label)

    im, fmt = _open_checked(path, label, max_pixels)
    width, height = im.size
    try:
        with im:
            im.verify()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im2:
                im2.load()
    except Image.DecompressionBombError as exc:  # pragma: no cover - caught by _open_checked
        raise DatasetFormatError(f"image is too large: {exc}", file=label) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # Pillow reports truncation as OSError("image file is truncated ...") and bad chunks as
        # SyntaxError / ValueError depending on the plugin.
        raise DatasetFormatError(f"image is truncated or corrupt: {exc}", file=label) from None
    return ImageInfo(width=width, height=height, format=fmt, size_bytes=size_bytes, sha256=_sha256(path))
