"""Projects: a user's container for training jobs (checkpoints are stored per project).

Projects are private: another user's project answers NotFoundError, so existence does not leak.
Every function takes the session and the acting user explicitly and commits its own writes.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tools.db.models import Project, User
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from trainer_runtime.formats.limits import describe_char, unsafe_char

MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 10_000


def _clean_name(name: str) -> str:
    value = (name or "").strip()
    if not value:
        raise InvalidInputError("Project name must not be empty", detail={"field": "name"})
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"Project name must be at most {MAX_NAME_LENGTH} characters", detail={"field": "name"})
    ch = unsafe_char(value)
    if ch is not None:
        raise InvalidInputError(
            f"Project name must not contain control or bidirectional-override characters ({describe_char(ch)})",
            detail={"field": "name"},
        )
    return value


def _clean_description(description: str | None) -> str:
    value = description or ""
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInputError(
            f"Project description must be at most {MAX_DESCRIPTION_LENGTH} characters",
            detail={"field": "description"},
        )
    ch = unsafe_char(value, allow_newlines=True)
    if ch is not None:
        raise InvalidInputError(
            f"Project description must not contain control or bidirectional-override characters ({describe_char(ch)})",
            detail={"field": "description"},
        )
    return value


def _name_taken(db: Session, owner_id: int, name: str, *, exclude_id: int | None = None) -> bool:
    query = select(Project.id).where(Project.owner_id == owner_id, Project.name == name)
    if exclude_id is not None:
        query = query.where(Project.id != exclude_id)
    return db.scalars(query).first() is not None


def _commit_or_conflict(db: Session, name: str) -> None:
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError(f"You already have a project named {name!r}", detail={"field": "name"}) from exc


def create_project(db: Session, owner: User, name: str, description: str | None = "") -> Project:
    """Create a project of `owner`. InvalidInputError for a bad name or description, ConflictError when the
    owner already has a project of that name."""
    clean = _clean_name(name)
    if _name_taken(db, owner.id, clean):
        raise ConflictError(f"You already have a project named {clean!r}", detail={"field": "name"})
    project = Project(owner_id=owner.id, name=clean, description=_clean_description(description))
    db.add(project)
    _commit_or_conflict(db, clean)
    db.refresh(project)
    return project


def list_projects(db: Session, owner: User) -> list[Project]:
    """The owner's projects, oldest first."""
    return list(db.scalars(select(Project).where(Project.owner_id == owner.id).order_by(Project.id)))


def get_project(db: Session, user: User, project_id: int) -> Project:
    """The user's project; NotFoundError when it does not exist or belongs to someone else."""
    project = db.get(Project, project_id)
    if project is None or project.owner_id != user.id:
        raise NotFoundError(f"Project {project_id} not found")
    return project


def update_project(
    db: Session,
    user: User,
    project_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Project:
    """Rename the user's project and/or change its description (None leaves a field as it is); errors as
    `create_project`, NotFoundError when it is not theirs."""
    project = get_project(db, user, project_id)
    if name is not None:
        clean = _clean_name(name)
        if clean != project.name and _name_taken(db, user.id, clean, exclude_id=project.id):
            raise ConflictError(f"You already have a project named {clean!r}", detail={"field": "name"})
        project.name = clean
    if description is not None:
        project.description = _clean_description(description)
    _commit_or_conflict(db, project.name)
    db.refresh(project)
    return project


def delete_project(db: Session, user: User, project_id: int) -> None:
    """Delete the user's project; NotFoundError when it is not theirs."""
    project = get_project(db, user, project_id)
    db.delete(project)
    db.commit()
