"""The built-in public demo datasets, ingested through the upload path at start-up (the data
itself is built by `tools.demo_datasets`). Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tools.context import ToolContext, UploadLimits
from tools.datasets.annotations import _forget_annotations
from tools.datasets.common import _sha256_file
from tools.datasets.locks import dataset_write_lock
from tools.datasets.upload import upload_path
from tools.db.models import Dataset, DatasetImage, DatasetSnapshot
from tools.errors import ConflictError
from trainer_runtime.storage import DualStorageClient, dataset_annotations_key, dataset_prefix

log = logging.getLogger(__name__)


def ensure_demo_datasets(session_factory: sessionmaker[Session], storage: DualStorageClient, work_dir: Path) -> None:
    """Make the built-in public demo datasets (digits, shapes-demo, poses-demo), owned by the system
    user, through the same ingest path as uploads. Idempotent: when all are present nothing is
    built; a present dataset whose annotations sha256 equals the freshly built one is skipped."""
    from tools.auth import ensure_system_user
    from tools.demo_datasets import DEMO_DATASETS, build_all

    work_dir = Path(work_dir)
    with session_factory() as db:
        system = ensure_system_user(db)
        ctx = ToolContext(db=db, user=system, storage=storage, work_dir=work_dir, limits=UploadLimits())
        names = list(DEMO_DATASETS)
        present = {
            d.name: d for d in db.scalars(select(Dataset).where(Dataset.owner_id == system.id, Dataset.name.in_(names)))
        }
        todo = [n for n in names if n not in present or not present[n].labeled or not present[n].annotations_sha256]
        if not todo:
            return
        built = build_all(work_dir / "demo", names=todo)
        for name in todo:
            folder = built.get(name)
            if folder is None:
                continue
            sha = _sha256_file(Path(folder) / "annotations.json")
            ds = present.get(name)
            if ds is not None and ds.labeled and ds.annotations_sha256 == sha:
                continue
            if ds is not None:
                _clear_contents(ctx, ds)
            else:
                ds = Dataset(
                    owner_id=system.id,
                    name=name,
                    description=DEMO_DATASETS[name],
                    visibility="public",
                    is_demo=True,
                )
                db.add(ds)
                try:
                    db.commit()
                except IntegrityError:  # another worker made it just now
                    db.rollback()
                    continue
            try:
                upload_path(ctx, ds.id, folder, format="dice")
            except ConflictError:  # another worker ingested it meanwhile
                db.rollback()
            log.info("demo dataset %s ready (%s)", name, ds.id)


def _clear_contents(ctx: ToolContext, ds: Dataset) -> None:
    """Remove a dataset's images and annotations (rows and objects), keeping the dataset row."""
    with dataset_write_lock(ctx, ds.id) as row:
        for img in list(ctx.db.scalars(select(DatasetImage).where(DatasetImage.dataset_id == row.id))):
            ctx.db.delete(img)
        for snap in ctx.db.scalars(select(DatasetSnapshot).where(DatasetSnapshot.dataset_id == row.id)):
            snap.status = "broken"
            snap.missing_files = list(snap.file_names or [])
        row.labeled = False
        row.num_images = row.num_annotations = row.total_bytes = 0
        row.class_names, row.capabilities = [], {}
        row.annotations_sha256 = None
        row.format_version = None
        ctx.db.commit()
    prefix = dataset_prefix(ds.id)
    for sub in ("images/", "thumbnails/"):
        ctx.storage.external.delete_prefix(prefix + sub)
    ctx.storage.external.delete(dataset_annotations_key(ds.id))
    _forget_annotations(ds.id)
