"""Projects CRUD and isolation between users — on every configured database."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import MakeUser

PROJECTS = "/api/v1/projects"


def test_crud(client: TestClient, auth_headers: dict[str, str]) -> None:
    created = client.post(PROJECTS, json={"name": "cats", "description": "cat vs dog"}, headers=auth_headers)
    assert created.status_code == 201, created.text
    project = created.json()
    assert set(project) == {"id", "name", "description", "owner_id", "created_at"}
    assert project["name"] == "cats" and project["description"] == "cat vs dog"
    assert project["created_at"].endswith(("+00:00", "Z"))
    me = client.get("/api/v1/auth/me", headers=auth_headers).json()
    assert project["owner_id"] == me["id"]

    listed = client.get(PROJECTS, headers=auth_headers).json()
    assert [p["id"] for p in listed] == [project["id"]]
    assert client.get(f"{PROJECTS}/{project['id']}", headers=auth_headers).json() == project

    patched = client.patch(f"{PROJECTS}/{project['id']}", json={"name": "pets"}, headers=auth_headers)
    assert patched.status_code == 200
    assert patched.json()["name"] == "pets" and patched.json()["description"] == "cat vs dog"
    patched = client.patch(f"{PROJECTS}/{project['id']}", json={"description": ""}, headers=auth_headers)
    assert patched.json()["name"] == "pets" and patched.json()["description"] == ""

    assert client.delete(f"{PROJECTS}/{project['id']}", headers=auth_headers).status_code == 204
    assert client.get(f"{PROJECTS}/{project['id']}", headers=auth_headers).status_code == 404
    assert client.get(PROJECTS, headers=auth_headers).json() == []


def test_name_unique_per_owner(client: TestClient, make_user: MakeUser) -> None:
    _, alice = make_user()
    _, bob = make_user()
    assert client.post(PROJECTS, json={"name": "demo"}, headers=alice).status_code == 201
    dup = client.post(PROJECTS, json={"name": "demo"}, headers=alice)
    assert dup.status_code == 409
    assert dup.json()["error"] == "ConflictError"
    # Another owner may use the same name.
    assert client.post(PROJECTS, json={"name": "demo"}, headers=bob).status_code == 201
    # Renaming onto an existing name conflicts too.
    other = client.post(PROJECTS, json={"name": "other"}, headers=alice).json()
    assert client.patch(f"{PROJECTS}/{other['id']}", json={"name": "demo"}, headers=alice).status_code == 409
    # Renaming to its own name is fine.
    assert client.patch(f"{PROJECTS}/{other['id']}", json={"name": "other"}, headers=alice).status_code == 200


def test_isolation_between_users(client: TestClient, make_user: MakeUser) -> None:
    _, alice = make_user()
    _, bob = make_user()
    project = client.post(PROJECTS, json={"name": "secret"}, headers=alice).json()
    url = f"{PROJECTS}/{project['id']}"

    assert client.get(PROJECTS, headers=bob).json() == []
    # Others' projects answer 404 (existence does not leak), for every verb.
    assert client.get(url, headers=bob).status_code == 404
    assert client.patch(url, json={"name": "mine"}, headers=bob).status_code == 404
    assert client.delete(url, headers=bob).status_code == 404
    assert client.get(f"{PROJECTS}/999999", headers=bob).status_code == 404
    # Unchanged for the owner.
    assert client.get(url, headers=alice).json()["name"] == "secret"


def test_anonymous_is_401(client: TestClient, auth_headers: dict[str, str]) -> None:
    project = client.post(PROJECTS, json={"name": "p"}, headers=auth_headers).json()
    assert client.get(PROJECTS).status_code == 401
    assert client.post(PROJECTS, json={"name": "x"}).status_code == 401
    assert client.get(f"{PROJECTS}/{project['id']}").status_code == 401
    assert client.delete(f"{PROJECTS}/{project['id']}").status_code == 401


def test_bad_names(client: TestClient, auth_headers: dict[str, str]) -> None:
    assert client.post(PROJECTS, json={"name": ""}, headers=auth_headers).status_code == 422
    assert client.post(PROJECTS, json={"name": "   "}, headers=auth_headers).status_code == 422
    assert client.post(PROJECTS, json={"name": "x" * 201}, headers=auth_headers).status_code == 422
    resp = client.post(PROJECTS, json={"name": "bad\x00name"}, headers=auth_headers)
    assert resp.status_code == 422
    assert resp.json()["location"]["field"] == "name"
    # Names are stripped.
    assert client.post(PROJECTS, json={"name": "  spaced "}, headers=auth_headers).json()["name"] == "spaced"
