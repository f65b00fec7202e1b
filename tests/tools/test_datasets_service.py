"""`tools.datasets` called directly (as the agent will): atomic commits with injected failures,
concurrent uploads, name resolution, the demo datasets. Runs on SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.dataset_builders import dice, labeled_files, png
from tools import datasets as svc
from tools.context import ToolContext
from tools.db.models import Dataset, DatasetImage, DatasetSnapshot, User
from tools.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from tools.uploads import Staging
from trainer_runtime.errors import StorageError
from trainer_runtime.storage import DualStorageClient, LocalObjectStore, ObjectStore


@pytest.fixture
def storage(tmp_path: Path) -> DualStorageClient:
    root = tmp_path / "storage"
    return DualStorageClient(
        LocalObjectStore(root / "external", "training-datasets", "external"),
        LocalObjectStore(root / "internal", "training-checkpoints", "internal"),
    )


@pytest.fixture
def users(session_factory: sessionmaker[Session]) -> dict[str, int]:
    with session_factory() as db:
        out = {}
        for name in ("alice", "bob", "carol"):
            u = User(email=f"{name}@example.com", hashed_password="x")
            db.add(u)
            db.commit()
            out[name] = u.id
        return out


class Ctx:
    """Opens ToolContexts for a user on fresh sessions (closed at teardown)."""

    def __init__(self, factory: sessionmaker[Session], storage: Any, work: Path) -> None:
        self.factory, self.storage, self.work = factory, storage, work
        self.sessions: list[Session] = []

    def __call__(self, user_id: int | None, storage: Any = None) -> ToolContext:
        db = self.factory()
        self.sessions.append(db)
        user = db.get(User, user_id) if user_id is not None else None
        return ToolContext(db=db, user=user, storage=storage or self.storage, work_dir=self.work)


@pytest.fixture
def ctx_for(session_factory: sessionmaker[Session], storage: DualStorageClient, tmp_path: Path) -> Iterator[Ctx]:
    c = Ctx(session_factory, storage, tmp_path / "work")
    yield c
    for s in c.sessions:
        s.close()


def stage(ctx: ToolContext, files: dict[str, bytes]) -> Staging:
    st = Staging(ctx.work_dir, ctx.limits)
    for name, data in files.items():
        st.add_file(name, data)
    return st


def upload(ctx: ToolContext, did: str, files: dict[str, bytes], fmt: str = "auto") -> svc.UploadOut:
    with stage(ctx, files) as st:
        return svc.upload_staged(ctx, did, st, fmt)


def counts(factory: sessionmaker[Session], did: str) -> tuple[int, bool, int]:
    with factory() as db:
        n = db.scalar(select(func.count()).select_from(DatasetImage).where(DatasetImage.dataset_id == did)) or 0
        ds = db.get(Dataset, did)
        assert ds is not None
        return n, ds.labeled, ds.num_images


def keys(storage: DualStorageClient, did: str) -> list[str]:
    return [o.key for o in storage.external.list(f"datasets/{did}/")]


class FailingStore:
    """Wraps an ObjectStore; the `fail_on`-th write (put_file/put_bytes/copy) raises."""

    def __init__(self, inner: ObjectStore, fail_on: int) -> None:
        self.inner, self.fail_on, self.writes = inner, fail_on, 0

    def _tick(self) -> None:
        self.writes += 1
        if self.writes == self.fail_on:
            raise StorageError("injected failure")

    def put_file(self, *a: Any, **k: Any) -> Any:
        self._tick()
        return self.inner.put_file(*a, **k)

    def put_bytes(self, *a: Any, **k: Any) -> Any:
        self._tick()
        return self.inner.put_bytes(*a, **k)

    def copy(self, *a: Any, **k: Any) -> Any:
        self._tick()
        return self.inner.copy(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def failing(storage: DualStorageClient, fail_on: int) -> DualStorageClient:
    return DualStorageClient(FailingStore(storage.external, fail_on), storage.internal)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- tests


def test_anonymous_is_refused(ctx_for: Ctx) -> None:
    with pytest.raises(AuthenticationError):
        svc.list_datasets(ctx_for(None))


def test_create_validates_and_names_are_unique_per_owner(ctx_for: Ctx, users: dict[str, int]) -> None:
    a, b = ctx_for(users["alice"]), ctx_for(users["bob"])
    svc.create_dataset(a, "cats")
    with pytest.raises(ConflictError):
        svc.create_dataset(a, "cats")
    svc.create_dataset(b, "cats")  # another owner may reuse it
    for bad in ("", "x" * 201, "tab\there", "nl\nx"):
        with pytest.raises(InvalidInputError):
            svc.create_dataset(a, bad)
    with pytest.raises(InvalidInputError):
        svc.create_dataset(a, "ok", visibility="everyone")


def test_upload_failure_midway_leaves_nothing(
    ctx_for: Ctx, users: dict[str, int], storage: DualStorageClient, session_factory: sessionmaker[Session]
) -> None:
    did = svc.create_dataset(ctx_for(users["alice"]), "atomic").id
    broken = ctx_for(users["alice"], storage=failing(storage, fail_on=3))
    with pytest.raises(StorageError, match="injected"):
        upload(broken, did, labeled_files(4))
    assert counts(session_factory, did) == (0, False, 0)
    assert keys(storage, did) == []
    # and the same upload works afterwards
    res = upload(ctx_for(users["alice"]), did, labeled_files(4))
    assert res.added == 4 and res.dataset.labeled
    assert len(keys(storage, did)) == 5


def test_db_failure_at_commit_removes_written_objects(
    ctx_for: Ctx,
    users: dict[str, int],
    storage: DualStorageClient,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = ctx_for(users["alice"])
    did = svc.create_dataset(ctx, "atomic-db").id

    def boom() -> None:
        raise RuntimeError("db down at commit")

    monkeypatch.setattr(ctx.db, "commit", boom)
    with pytest.raises(RuntimeError, match="db down"):
        upload(ctx, did, labeled_files(3))
    monkeypatch.undo()
    assert counts(session_factory, did) == (0, False, 0)
    assert keys(storage, did) == []
    assert not list((ctx.work_dir / "staging").iterdir())


def test_delete_image_failure_restores_annotations(
    ctx_for: Ctx, users: dict[str, int], storage: DualStorageClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = ctx_for(users["alice"])
    did = svc.create_dataset(ctx, "restore").id
    upload(ctx, did, labeled_files(2))
    before = storage.external.get_bytes(f"datasets/{did}/annotations.json")
    img = svc.list_images(ctx, did).items[0]
    ctx2 = ctx_for(users["alice"])

    def boom() -> None:
        raise RuntimeError("db down at commit")

    monkeypatch.setattr(ctx2.db, "commit", boom)
    with pytest.raises(RuntimeError):
        svc.delete_image(ctx2, did, img.id)
    monkeypatch.undo()
    assert storage.external.get_bytes(f"datasets/{did}/annotations.json") == before
    assert storage.external.exists(f"datasets/{did}/images/{img.file_name}")
    assert svc.list_images(ctx_for(users["alice"]), did).total == 2


def test_snapshot_failure_leaves_no_snapshot(
    ctx_for: Ctx, users: dict[str, int], storage: DualStorageClient, session_factory: sessionmaker[Session]
) -> None:
    ctx = ctx_for(users["alice"])
    did = svc.create_dataset(ctx, "snapfail").id
    upload(ctx, did, labeled_files(1))
    with pytest.raises(StorageError):
        svc.create_snapshot(ctx_for(users["alice"], storage=failing(storage, 1)), did)
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(DatasetSnapshot)) == 0
    assert not [k for k in keys(storage, did) if "/snapshots/" in k]


def test_concurrent_labeled_uploads_do_not_interleave(
    ctx_for: Ctx, users: dict[str, int], storage: DualStorageClient, session_factory: sessionmaker[Session]
) -> None:
    did = svc.create_dataset(ctx_for(users["alice"]), "race").id
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def worker(top: str) -> None:
        ctx = ctx_for(users["alice"])
        files = labeled_files(3, top=top, sub=top)
        try:
            with stage(ctx, files) as st:
                barrier.wait()
                results.append(svc.upload_staged(ctx, did, st))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [r for r in results if isinstance(r, svc.UploadOut)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 1 and len(errors) == 1, results
    assert isinstance(errors[0], ConflictError) and "never merged" in errors[0].message
    n, labeled, num = counts(session_factory, did)
    assert (n, labeled, num) == (3, True, 3)
    assert len(keys(storage, did)) == 4  # 3 images + annotations.json of the winner only


def test_concurrent_unlabeled_uploads_both_land(
    ctx_for: Ctx, users: dict[str, int], session_factory: sessionmaker[Session]
) -> None:
    did = svc.create_dataset(ctx_for(users["alice"]), "race2").id
    errors: list[Exception] = []

    def worker(prefix: str) -> None:
        ctx = ctx_for(users["alice"])
        try:
            upload(ctx, did, {f"images/{prefix}/{i}.png": png(color=(i, 1, 2)) for i in range(5)})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("p", "q")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert counts(session_factory, did) == (10, False, 10)


def test_resolve_dataset(ctx_for: Ctx, users: dict[str, int]) -> None:
    a, b, c = (ctx_for(users[n]) for n in ("alice", "bob", "carol"))
    mine = svc.create_dataset(a, "shared-name")
    b_pub = svc.create_dataset(b, "shared-name", visibility="public")
    svc.create_dataset(b, "bob-private")
    svc.create_dataset(c, "shared-name", visibility="public")
    svc.create_dataset(b, "traffic-signs", visibility="public")
    assert svc.resolve_dataset(a, "shared-name").id == mine.id  # own first
    assert svc.resolve_dataset(a, b_pub.id).id == b_pub.id  # by id
    assert svc.resolve_dataset(c, "Shared-Name").owner_id == users["carol"]  # case-insensitive, own first
    with pytest.raises(NotFoundError, match="traffic-signs"):
        svc.resolve_dataset(a, "trafic-signs")
    with pytest.raises(NotFoundError):
        svc.resolve_dataset(a, "bob-private")  # private of someone else stays hidden
    assert svc.resolve_dataset(a, "TRAFFIC-SIGNS").name == "traffic-signs"


def test_resolve_ambiguous_public(ctx_for: Ctx, users: dict[str, int]) -> None:
    svc.create_dataset(ctx_for(users["bob"]), "coco8", visibility="public")
    svc.create_dataset(ctx_for(users["carol"]), "coco8", visibility="public")
    with pytest.raises(ConflictError, match="use the dataset id") as ei:
        svc.resolve_dataset(ctx_for(users["alice"]), "coco8")
    owners = {c["owner_id"] for c in ei.value.detail["candidates"]}
    assert owners == {users["bob"], users["carol"]}


def test_permissions_in_the_service(ctx_for: Ctx, users: dict[str, int]) -> None:
    a, b = ctx_for(users["alice"]), ctx_for(users["bob"])
    priv = svc.create_dataset(a, "p").id
    pub = svc.create_dataset(a, "q", visibility="public").id
    with pytest.raises(NotFoundError):
        svc.get_dataset(b, priv)
    assert svc.get_dataset(b, pub).is_owner is False
    with pytest.raises(PermissionDeniedError):
        svc.update_dataset(b, pub, name="mine now")
    with pytest.raises(PermissionDeniedError):
        upload(b, pub, {"a.png": png()})
    with pytest.raises(NotFoundError):
        upload(b, priv, {"a.png": png()})


def test_snapshot_by_reader_for_jobs(ctx_for: Ctx, users: dict[str, int]) -> None:
    a = ctx_for(users["alice"])
    did = svc.create_dataset(a, "pub", visibility="public").id
    upload(a, did, labeled_files(1))
    with pytest.raises(PermissionDeniedError):
        svc.create_snapshot(ctx_for(users["bob"]), did)
    snap = svc.create_snapshot(ctx_for(users["bob"]), did, require_owner=False)
    assert snap.version == 1 and snap.created_by == users["bob"]


def test_upload_path_folder_and_zip(ctx_for: Ctx, users: dict[str, int], tmp_path: Path) -> None:
    a = ctx_for(users["alice"])
    folder = tmp_path / "src"
    for name, data in labeled_files(2, top="").items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    did = svc.create_dataset(a, "from-disk").id
    res = svc.upload_path(a, did, folder)
    assert res.added == 2 and res.format == "dice"
    with pytest.raises(InvalidInputError):
        svc.upload_path(a, did, tmp_path / "missing")


def test_compatibility_unknown_task(ctx_for: Ctx, users: dict[str, int]) -> None:
    a = ctx_for(users["alice"])
    did = svc.create_dataset(a, "c").id
    with pytest.raises(InvalidInputError, match="unknown task_type"):
        svc.check_dataset_compatibility(a, did, "depth_estimation")
    res = svc.check_dataset_compatibility(a, did, "object_detection")
    assert res["status"] == "incompatible" and "annotations.json" in res["reason"]


@pytest.mark.slow
def test_ensure_demo_datasets_is_idempotent_and_fast(
    session_factory: sessionmaker[Session], storage: DualStorageClient, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    svc.ensure_demo_datasets(session_factory, storage, work)
    with session_factory() as db:
        rows = {d.name: d for d in db.scalars(select(Dataset))}
        assert set(rows) == {"digits", "shapes-demo", "poses-demo"}
        for d in rows.values():
            assert d.visibility == "public" and d.is_demo and d.labeled and d.num_images > 0
            owner = db.get(User, d.owner_id)
            assert owner is not None and owner.email == "system@vision-agent.local" and owner.is_system
        shas = {n: d.annotations_sha256 for n, d in rows.items()}
        assert rows["digits"].num_images == 1797 and len(rows["digits"].class_names) == 10
        assert rows["shapes-demo"].capabilities["instance_segmentation"]["status"] == "native"
        assert rows["poses-demo"].capabilities["pose_estimation"]["status"] == "native"
    t0 = time.monotonic()
    svc.ensure_demo_datasets(session_factory, storage, work)
    assert time.monotonic() - t0 < 5.0  # a rebuild takes many seconds; the second call only checks the hashes
    with session_factory() as db:
        assert {d.name: d.annotations_sha256 for d in db.scalars(select(Dataset))} == shas
        # the stored annotations are exactly the built ones
        digits = db.scalars(select(Dataset).where(Dataset.name == "digits")).one()
        stored = json.loads(storage.external.get_bytes(f"datasets/{digits.id}/annotations.json"))
        assert len(stored["images"]) == 1797


def test_annotations_can_reference_existing_images(ctx_for: Ctx, users: dict[str, int]) -> None:
    a = ctx_for(users["alice"])
    did = svc.create_dataset(a, "later-labels").id
    upload(a, did, {"images/old.png": png()})
    ann = dice([(1, "old.png", 8, 6), (2, "new.png", 8, 6)])
    res = upload(a, did, {"annotations.json": json.dumps(ann).encode(), "images/new.png": png(color=(0, 9, 9))})
    assert res.added == 1 and res.dataset.labeled and res.dataset.num_images == 2
    page = svc.list_images(a, did)
    assert [i.num_annotations for i in page.items] == [1, 1]


def test_write_locks_are_not_kept_for_every_dataset_touched(
    session_factory: sessionmaker[Session], users: dict[str, int], storage: DualStorageClient, tmp_path: Path
) -> None:
    """The in-process writer locks (per dataset, per user for the quota) are dropped once released:
    touching many datasets leaves no entries behind."""
    from tools.context import UploadLimits
    from tools.datasets.locks import DATASET_LOCKS, USER_LOCKS

    with session_factory() as db:
        user = db.get(User, users["alice"])
        ctx = ToolContext(
            db=db,
            user=user,
            storage=storage,
            work_dir=tmp_path / "work",
            limits=UploadLimits(user_storage_quota_bytes=10**9),
        )
        ids = [svc.create_dataset(ctx, f"many-{i}").id for i in range(25)]
        for i, did in enumerate(ids):
            assert upload(ctx, did, {"images/a.png": png(color=(i, 2, 3))}).added == 1
        for did in ids[:5]:
            svc.delete_dataset(ctx, did)
    assert len(DATASET_LOCKS) == 0
    assert len(USER_LOCKS) == 0
