"""Read a DICE folder (``annotations.json`` + ``images/``) through the importer checks, so a DICE
upload is validated and re-written like any other format. Contract 2 in docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.importers.builder import Builder
from trainer_runtime.formats.paths import safe_relpath
from trainer_runtime.formats.validate import load_annotations


def import_dice(src: Path, b: Builder) -> str:
    """Add a DICE folder's images and annotations to `b`; returns the dataset's name. DatasetFormatError when
    annotations.json is invalid or an image has no file."""
    ds = load_annotations(src / "annotations.json", file="annotations.json", limits=b.limits)
    images_dir = src / "images"
    missing: list[DatasetFormatError] = []
    for i, img in enumerate(ds.images):
        field_path = f"images[{i}].file_name"
        rel = safe_relpath(img.file_name, file="annotations.json", field=field_path)
        path = images_dir / rel
        if not path.is_file():
            missing.append(
                DatasetFormatError(
                    f"image {img.id} {img.file_name!r} has no file in images/",
                    file="annotations.json",
                    field=field_path,
                )
            )
            continue
        b.add_image(
            path,
            rel,
            image_id=img.id,
            declared=(img.width, img.height),
            file="annotations.json",
            field=field_path,
        )
        b.images[-1].update({k: v for k, v in img.model_dump(exclude_none=True).items() if k not in b.images[-1]})
    if missing:
        first = missing[0]
        if len(missing) > 1:
            raise DatasetFormatError(
                f"{first.message} (and {len(missing) - 1} more missing files)",
                file=first.file,
                field=first.field,
            )
        raise first
    b.categories = [c.model_dump(exclude_none=True) for c in ds.categories]
    b.annotations = [a.model_dump(exclude_none=True) for a in ds.annotations]
    return ds.dataset.name
