"""Bounded integer parameters shared by every route (issue 14: no 500 from a huge number).

SQLite stores 64-bit signed integers: a bigger Python int in a query raises OverflowError deep in
the driver (a 500), and PostgreSQL answers with a data error. So every integer that comes from a
request is bounded where it enters, and a value outside answers 422 with FastAPI's usual body
naming the parameter:

    IdPath          a database id in the path              1 .. 2**63-1
    IdQuery         an optional id filter in the query     1 .. 2**63-1 (or absent)
    Offset          how many rows to skip                  0 .. MAX_OFFSET
    AfterSeq        an event sequence number to resume at  0 .. 2**63-1

Limits (`limit=`) keep their own per-route maximum (`Query(ge=1, le=...)`). Integer fields of
request bodies use `Field(ge=..., le=MAX_ID)` (or a tighter domain bound) the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ID = 2**63 - 1  # the largest signed 64-bit integer: SQLite INTEGER, PostgreSQL BIGINT
MAX_OFFSET = 10**9  # far past any real listing; keeps OFFSET a small integer for every database

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
AfterSeq = Annotated[int, Query(ge=0, le=MAX_ID, description="only events after this sequence number")]
