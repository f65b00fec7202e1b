"""Serialising writers in this process: one writer per dataset (`dataset_write_lock`, plus a row lock
on databases that have them) and one storage-quota check per user (`user_quota_lock`). The locks live
in `KeyedLocks`, which forgets a key when nobody holds or waits for it. Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select

from tools.context import ToolContext
from tools.datasets.common import _not_found
from tools.db.models import Dataset


@dataclass
class _Entry:
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0
    """Threads holding or waiting for `lock` (re-entrant holds count each time)."""


class KeyedLocks:
    """One re-entrant lock per key, made on first use and removed when its last holder or waiter
    leaves: the map holds only keys in use, however many keys were ever locked."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]


DATASET_LOCKS = KeyedLocks()
"""Writers of one dataset id, in this process."""
USER_LOCKS = KeyedLocks()
"""Quota checks and commits of one user id (uploads and weights), in this process."""


def user_quota_lock(user_id: int) -> AbstractContextManager[None]:
    """Hold while checking a user's storage quota and committing what it counted, so that two uploads
    cannot both fit the last bytes."""
    return USER_LOCKS.hold(user_id)


@contextmanager
def dataset_write_lock(ctx: ToolContext, dataset_id: str) -> Iterator[Dataset]:
    """Serialise writers of one dataset: a lock in this process, and ``SELECT ... FOR UPDATE`` on
    databases that have row locks. Yields the freshly read row; rolls back on error. The caller
    commits inside the block (which releases the row lock)."""
    with DATASET_LOCKS.hold(dataset_id):
        stmt = select(Dataset).where(Dataset.id == dataset_id).execution_options(populate_existing=True)
        if ctx.db.get_bind().dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        try:
            ds = ctx.db.execute(stmt).scalar_one_or_none()
            if ds is None:
                raise _not_found(dataset_id)
            yield ds
        except BaseException:
            ctx.db.rollback()
            raise
