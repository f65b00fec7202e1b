"""Persistence: SQLAlchemy 2 models, engine/session factory, migrations runner."""

from tools.db.models import (
    Base,
    Dataset,
    DatasetImage,
    DatasetSnapshot,
    Job,
    JobCheckpoint,
    JobEvent,
    Project,
    User,
)
from tools.db.session import create_engine_for_url, make_session_factory, migrate

__all__ = [
    "Base",
    "Dataset",
    "DatasetImage",
    "DatasetSnapshot",
    "Job",
    "JobCheckpoint",
    "JobEvent",
    "Project",
    "User",
    "create_engine_for_url",
    "make_session_factory",
    "migrate",
]
