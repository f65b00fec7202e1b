"""Per-user storage quota: bytes held by a user's datasets and uploaded weights, and the 413 check.
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tools.context import ToolContext
from tools.db.models import Dataset, UserWeights
from tools.errors import PayloadTooLargeError


def weights_bytes(db: Session, owner_id: int) -> int:
    """Bytes of the user's uploaded weights (all their files; `tools.user_weights`)."""
    rows = db.scalars(select(UserWeights.files).where(UserWeights.owner_id == owner_id))
    return sum(int(f.get("size") or 0) for files in rows for f in (files or []) if isinstance(f, dict))


def storage_used(db: Session, owner_id: int) -> int:
    """Bytes of images the user's datasets hold (the sum of their ``total_bytes``) and of the
    weights files they uploaded (`tools.user_weights`)."""
    used = db.scalar(select(func.coalesce(func.sum(Dataset.total_bytes), 0)).where(Dataset.owner_id == owner_id))
    return int(used or 0) + weights_bytes(db, owner_id)


def check_quota(ctx: ToolContext, owner_id: int, adding: int) -> None:
    """PayloadTooLargeError (413) when `adding` bytes would take the user over their storage quota
    (``limits.user_storage_quota_bytes``; 0 = none). `adding` 0 asks whether the user is already full."""
    quota = ctx.limits.user_storage_quota_bytes
    if not quota:
        return
    used = storage_used(ctx.db, owner_id)
    if adding and used + adding > quota:
        message = f"this upload adds {adding} bytes to the {used} bytes your datasets hold"
    elif not adding and used >= quota:
        message = f"your datasets hold {used} bytes"
    else:
        return
    raise PayloadTooLargeError(
        f"storage quota exceeded: {message}; your quota is {quota} bytes (delete images or datasets first)",
        detail={"quota_bytes": quota, "used_bytes": used, "upload_bytes": adding},
    )
