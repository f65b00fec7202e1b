"""Read an ImageFolder (``root/<class>/*.jpg`` or ``root/<split>/<class>/*.jpg``) into a `Builder`:
one image-level label per image. Contract 2 in docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.importers.builder import Builder, iter_images, rel_to
from trainer_runtime.formats.importers.detect import imagefolder_layout
from trainer_runtime.formats.limits import check_category_count, check_label


def import_imagefolder(src: Path, b: Builder) -> str:
    """Add an ImageFolder dataset (root/<class>/ or root/<split>/<class>/) to `b`, one image-level label per
    image; returns "" (the format has no name). DatasetFormatError when there are no class folders."""
    layout = imagefolder_layout(src)
    if layout is None:
        raise DatasetFormatError(
            "no class folders with images (expected root/<class>/*.jpg or root/train/<class>/*.jpg)",
            file=src.name,
        )
    pairs, classes = layout
    check_category_count(len(classes), b.limits, file=src.name, field="class folders")
    for n in classes:
        check_label(n, b.limits, what="class folder name", file=n, field=None)
    ids = {n: i for i, n in enumerate(classes)}
    b.categories = [{"id": i, "name": n} for n, i in ids.items()]
    for _, folder in pairs:
        cid = ids[folder.name]
        for p in iter_images(folder):
            iid = b.add_image(p, rel_to(p, src))
            b.add_annotation(image_id=iid, category_id=cid)
    return ""
