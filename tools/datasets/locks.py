"""Serialising writers: one dataset at a time (`dataset_write_lock`), and one quota check per user.
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from tools.context import ToolContext
from tools.datasets.common import _not_found
from tools.db.models import Dataset

_locks_guard = threading.Lock()
_locks: dict[str, threading.RLock] = {}


def _lock_for(dataset_id: str) -> threading.RLock:
    with _locks_guard:
        lock = _locks.get(dataset_id)
        if lock is None:
            lock = _locks[dataset_id] = threading.RLock()
        return lock


@contextmanager
def dataset_write_lock(ctx: ToolContext, dataset_id: str) -> Iterator[Dataset]:
    """Serialise writers of one dataset: a lock in this process, and ``SELECT ... FOR UPDATE`` on
    databases that have row locks. Yields the freshly read row; rolls back on error. The caller
    commits inside the block (which releases the row lock)."""
    with _lock_for(dataset_id):
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
