"""`/api/v1/projects`: a user's own projects (others' answer 404)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from tools import projects
from web.deps import CurrentUser, SessionDep
from web.params import IdPath
from web.routes import UTCDateTime

router = APIRouter(prefix="/projects", tags=["projects"])


class ProjectIn(BaseModel):
    """A new project: a name unique among your projects and an optional description."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""


class ProjectPatch(BaseModel):
    """The project fields to change; those left out stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None


class ProjectOut(BaseModel):
    """A project as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    owner_id: int
    created_at: UTCDateTime


@router.post("", status_code=201, response_model=ProjectOut, summary="Create a project")
def create_project(body: ProjectIn, db: SessionDep, user: CurrentUser) -> ProjectOut:
    """Names are unique per owner (409 otherwise)."""
    return ProjectOut.model_validate(projects.create_project(db, user, body.name, body.description))


@router.get("", response_model=list[ProjectOut], summary="My projects")
def list_projects(db: SessionDep, user: CurrentUser) -> list[ProjectOut]:
    """Your projects, oldest first; 401 without sign-in."""
    return [ProjectOut.model_validate(p) for p in projects.list_projects(db, user)]


@router.get("/{project_id}", response_model=ProjectOut, summary="One of my projects")
def get_project(project_id: IdPath, db: SessionDep, user: CurrentUser) -> ProjectOut:
    """One of your projects; 404 when it does not exist or is not yours."""
    return ProjectOut.model_validate(projects.get_project(db, user, project_id))


@router.patch("/{project_id}", response_model=ProjectOut, summary="Rename or re-describe a project")
def update_project(project_id: IdPath, body: ProjectPatch, db: SessionDep, user: CurrentUser) -> ProjectOut:
    """Change the name and/or description of one of your projects; 409 when you already have a project
    of that name, 404 when it is not yours."""
    project = projects.update_project(db, user, project_id, name=body.name, description=body.description)
    return ProjectOut.model_validate(project)


@router.delete("/{project_id}", status_code=204, summary="Delete a project (owner only)")
def delete_project(project_id: IdPath, db: SessionDep, user: CurrentUser) -> Response:
    """Delete one of your projects; 404 when it does not exist or is not yours."""
    projects.delete_project(db, user, project_id)
    return Response(status_code=204)
