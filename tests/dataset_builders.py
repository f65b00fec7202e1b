"""Builders for dataset tests: tiny real images (Pillow), DICE annotations, zips (incl. malicious
ones written with low-level ZipInfo), multipart parts, and "nothing was written" probes."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from typing import Any

from PIL import Image

API = "/api/v1/datasets"


def png(w: int = 8, h: int = 6, color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def jpg(w: int = 16, h: int = 12, color: tuple[int, int, int] = (0, 128, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def noisy_jpg(w: int = 32, h: int = 32, seed: int = 0) -> bytes:
    import numpy as np

    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def dice(
    images: list[tuple[int, str, int, int]],
    annotations: list[dict[str, Any]] | None = None,
    categories: list[dict[str, Any]] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A DICE v1 dict: images given as (id, file_name, width, height)."""
    return {
        "format_version": "1.0",
        "dataset": {"name": "t", "description": ""},
        "categories": categories if categories is not None else [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": annotations
        if annotations is not None
        else [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 3, 3]} for i, _f, _w, _h in images],
        **top,
    }


def labeled_files(n: int = 3, top: str = "mydata", sub: str = "a") -> dict[str, bytes]:
    """A DICE folder of n 8x6 PNGs with one box each, as {relative path: bytes}."""
    files: dict[str, bytes] = {}
    imgs = []
    for i in range(1, n + 1):
        rel = f"{sub}/{i}.png"
        files[f"{top}/images/{rel}" if top else f"images/{rel}"] = png(color=(i * 40 % 256, 0, 0))
        imgs.append((i, rel, 8, 6))
    files[f"{top}/annotations.json" if top else "annotations.json"] = json.dumps(dice(imgs)).encode()
    return files


def parts(files: dict[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart `files` parts; each file name carries the relative path (browser folder upload)."""
    return [("files", (name, data, "application/octet-stream")) for name, data in files.items()]


def zip_bytes(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_raw_entries(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    """A zip written entry by entry from hand-made ZipInfo headers (for malicious archives)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def raw_info(name: str, *, compress: int = zipfile.ZIP_STORED, flag_bits: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # bypass ZipInfo's own normalisation (absolute names, backslashes)
    info.orig_filename = name
    info.compress_type = compress
    info.flag_bits |= flag_bits
    return info


def zip_with_lying_size(name: str, real: bytes, declared: int) -> bytes:
    """A stored zip whose headers (local and central) claim `declared` bytes for `name`."""
    good = zip_bytes({name: real}, compression=zipfile.ZIP_STORED)
    size = len(real).to_bytes(4, "little")
    fake = declared.to_bytes(4, "little")
    # patch uncompressed size in the local header (offset 22) and the central directory (offset 24)
    data = bytearray(good)
    assert data[22:26] == size
    data[22:26] = fake
    cd = data.rfind(b"PK\x01\x02")
    assert data[cd + 24 : cd + 28] == size
    data[cd + 24 : cd + 28] = fake
    return bytes(data)


def zip_marked_encrypted(name: str, data: bytes) -> bytes:
    """A zip whose only entry has the 'encrypted' general-purpose flag set in both headers."""
    raw = bytearray(zip_bytes({name: data}, compression=zipfile.ZIP_STORED))
    raw[6] |= 0x1  # local file header: general purpose bit flag
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 8] |= 0x1  # central directory header: general purpose bit flag
    return bytes(raw)
