"""One job-supervisor leader among the server replicas that share a database.

Every replica runs a `tools.supervisor.Supervisor`, but only the one holding the leader lock acts
on jobs (reaps trainers, carries out stops, retries crashes, starts queued jobs, adopts what a
dead leader left); the others serve HTTP and WebSocket only and try to take the lock on every
tick. The lock is the database's own, so nothing else (no Redis, no Kubernetes lease) is needed::

    lock = leader_lock_for(engine)
    lock.acquire() -> bool   # one try, never waits; True while held (also when already held)
    lock.check()   -> bool   # cheap: still held? False once lost (the holder must stop acting)
    lock.release()           # give it up (idempotent); a process that dies gives it up too
    lock.close()             # release and free the resources (the lock's own connection)

Implementations (`leader_lock_for` picks one from the engine's URL):

`PostgresLeaderLock`
    A session-level advisory lock, ``pg_try_advisory_lock(LOCK_CLASS, crc32(current_schema()))``,
    on a dedicated connection outside the app's pool (AUTOCOMMIT, so it never sits idle in a
    transaction; TCP keepalives on both ends and a TCP user timeout, so a peer that vanished is
    noticed within about half a minute). `check` runs ``SELECT 1`` on that connection: when it
    fails the session is gone, the server has released the lock with it, and another replica may
    hold it already. The key includes the schema, so deployments (and test runs) sharing one
    database in different schemas elect their own leaders. Session locks need a session: point
    DATABASE_URL at PostgreSQL itself or at a PgBouncer in *session* pooling mode, not
    transaction mode.
`FileLeaderLock`
    SQLite means one host: ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<database file>.leader``
    beside the database. Two processes on one SQLite file elect one leader; so do two supervisors
    in one process (each opens the file itself, and flock locks belong to the open file). The
    kernel releases it when the file is closed, also when the process dies.
`ProcessLeaderLock`
    In-memory SQLite (and any other database): one leader per key in this process.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
import weakref
import zlib
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

LOCK_CLASS = 0x56544131
"""First half of the PostgreSQL advisory lock key ('VTA1'); the second is crc32 of the schema."""
CONNECT_TIMEOUT_S = 10
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
"""libpq settings of the lock connection (client side): keepalives for an idle socket, and
`tcp_user_timeout` (ms) so that a check whose packets go unanswered fails after 30 s instead of
the kernel's retransmissions (about 15 minutes)."""
SERVER_KEEPALIVE_SQL = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
)
"""Keepalives on the server's end of the lock session, so that it notices a vanished replica (and
frees the lock) in about half a minute instead of the kernel's default two hours."""
WARN_EVERY_S = 60.0


class LeaderLock(abc.ABC):
    """See the module doc. Thread-safe."""

    @abc.abstractmethod
    def acquire(self) -> bool:
        """Try once to take the lock, without waiting; True when this instance holds it now."""

    @abc.abstractmethod
    def check(self) -> bool:
        """Whether this instance still holds the lock (cheap). False once it was lost."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up (idempotent)."""

    def close(self) -> None:
        """Release the lock and whatever it holds open."""
        self.release()

    @property
    @abc.abstractmethod
    def held(self) -> bool:
        """Held as far as this instance knows (no I/O)."""

    def describe(self) -> str:
        return type(self).__name__


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


class PostgresLeaderLock(LeaderLock):
    """A session-level advisory lock on a dedicated connection (see the module doc)."""

    def __init__(self, url: URL | str, *, lock_class: int = LOCK_CLASS) -> None:
        self.lock_class = _int32(lock_class)
        connect_args: dict[str, Any] = {}
        driver = (url if isinstance(url, URL) else _parse_url(url)).get_driver_name()
        if driver in ("psycopg", "psycopg2"):
            connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, **KEEPALIVE}
        self._engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=connect_args)
        self._conn: Connection | None = None
        self._held = False
        self._key: tuple[int, int] | None = None
        self._mutex = threading.Lock()
        self._last_warning = 0.0
        self.backend_pid: int | None = None
        self.schema: str | None = None

    @property
    def held(self) -> bool:
        return self._held

    def describe(self) -> str:
        key = self._key or (self.lock_class, 0)
        return f"PostgreSQL advisory lock ({key[0]}, {key[1]}) of schema {self.schema or '?'}"

    def _connect(self) -> Connection:
        conn = self._engine.connect()
        try:
            for stmt in SERVER_KEEPALIVE_SQL:
                conn.execute(text(stmt))
            row = conn.execute(text("SELECT current_schema(), pg_backend_pid()")).one()
        except Exception:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self.schema = str(row[0] or "public")
        self.backend_pid = int(row[1])
        self._key = (self.lock_class, _int32(zlib.crc32(self.schema.encode())))
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._held = False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()

    def _warn(self, message: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning("%s: %s", message, exc)
        else:
            log.debug("%s: %s", message, exc)

    def acquire(self) -> bool:
        with self._mutex:
            if self._held:
                return self._check_locked()
            try:
                if self._conn is None:
                    self._conn = self._connect()
                assert self._key is not None
                got = self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": self._key[0], "b": self._key[1]}
                ).scalar()
            except Exception as exc:
                self._warn("leader lock: PostgreSQL unreachable", exc)
                self._drop_connection()
                return False
            self._held = bool(got)
            return self._held

    def _check_locked(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("leader lock lost: its PostgreSQL session ended (%s)", exc)
            self._drop_connection()
            return False
        return True

    def check(self) -> bool:
        with self._mutex:
            return self._check_locked()

    def release(self) -> None:
        with self._mutex:
            if self._conn is not None and self._held and self._key is not None:
                with contextlib.suppress(Exception):
                    self._conn.execute(
                        text("SELECT pg_advisory_unlock(:a, :b)"), {"a": self._key[0], "b": self._key[1]}
                    )
            self._drop_connection()

    def close(self) -> None:
        self.release()
        self._engine.dispose()


class FileLeaderLock(LeaderLock):
    """An exclusive flock on a file (one host; see the module doc)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fh: Any = None
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._fh is not None

    def describe(self) -> str:
        return f"file lock {self.path}"

    def acquire(self) -> bool:
        with self._mutex:
            if self._fh is not None:
                return True
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # 0600 like the database beside it; kept open while held
                fh = open(self.path, "a+", encoding="utf-8", opener=lambda p, f: os.open(p, f, 0o600))  # noqa: SIM115
            except OSError as exc:
                log.warning("leader lock: cannot open %s: %s", self.path, exc)
                return False
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                return False
            with contextlib.suppress(OSError):  # who holds it, for an operator
                fh.seek(0)
                fh.truncate()
                fh.write(f"{socket.gethostname()} pid {os.getpid()}\n")
                fh.flush()
            self._fh = fh
            return True

    def check(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        with self._mutex:
            fh, self._fh = self._fh, None
            if fh is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                fh.close()


class ProcessLeaderLock(LeaderLock):
    """One holder per key in this process (a holder that was garbage-collected holds nothing)."""

    _owners: ClassVar[dict[str, weakref.ref[ProcessLeaderLock]]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: str) -> None:
        self.key = key

    @property
    def held(self) -> bool:
        with self._guard:
            ref = self._owners.get(self.key)
            return ref is not None and ref() is self

    def describe(self) -> str:
        return f"in-process lock {self.key!r}"

    def acquire(self) -> bool:
        with self._guard:
            ref = self._owners.get(self.key)
            owner = ref() if ref is not None else None
            if owner is None:
                self._owners[self.key] = weakref.ref(self)
                return True
            return owner is self

    def check(self) -> bool:
        return self.held

    def release(self) -> None:
        with self._guard:
            ref = self._owners.get(self.key)
            if ref is not None and ref() in (self, None):
                del self._owners[self.key]


def _parse_url(url: str) -> URL:
    from sqlalchemy.engine import make_url

    return make_url(url)


def leader_lock_for(engine: Engine | None) -> LeaderLock:
    """The leader lock of the replicas sharing `engine`'s database (see the module doc)."""
    if engine is None:
        return ProcessLeaderLock("default")
    url = engine.url
    backend = url.get_backend_name()
    if backend == "postgresql":
        return PostgresLeaderLock(url)
    if backend == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).resolve()
            return FileLeaderLock(path.with_name(path.name + ".leader"))
        return ProcessLeaderLock(f"sqlite-memory:{id(engine)}")
    return ProcessLeaderLock(url.render_as_string(hide_password=True))


__all__ = [
    "LOCK_CLASS",
    "FileLeaderLock",
    "LeaderLock",
    "PostgresLeaderLock",
    "ProcessLeaderLock",
    "leader_lock_for",
]
