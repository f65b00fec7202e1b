"""Bounded integer parameters shared by every route (no 500 from a huge number).

The id and event-sequence columns are INTEGER: 32-bit on PostgreSQL (a bigger value in a query is
"integer out of range", a 500), 64-bit on SQLite (past that, OverflowError in the driver, a 500).
No row can have an id past 2**31-1 on either, so every integer that comes from a request is
bounded to that where it enters, and a value outside answers 422 with FastAPI's usual body naming
the parameter:

    IdPath          a database id in the path              1 .. MAX_ID (2**31-1)
    IdQuery         an optional id filter in the query     1 .. MAX_ID (or absent)
    Offset          how many rows to skip                  0 .. MAX_OFFSET
    AfterSeq        an event sequence number to resume at  0 .. MAX_ID

Limits (`limit=`) keep their own per-route maximum (`Query(ge=1, le=...)`). Integer fields of
request bodies use `Field(ge=..., le=MAX_ID)` (or a tighter domain bound) the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from tools.context import MAX_DB_ID

MAX_ID = MAX_DB_ID  # 2**31-1: the largest value of an INTEGER id/seq column on every database
MAX_OFFSET = 10**9  # far past any real listing; keeps OFFSET a small integer for every database

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
AfterSeq = Annotated[int, Query(ge=0, le=MAX_ID, description="only events after this sequence number")]
