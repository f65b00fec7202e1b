"""Permission matrix: owner / other user / anonymous x every dataset operation, on a private and a
public dataset. Private datasets of others answer 404 (existence must not leak), public ones 403
for changes; anonymous callers always get 401."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakeUser
from tests.dataset_builders import API, labeled_files, parts, png


@dataclass
class World:
    client: TestClient
    headers: dict[str, dict[str, str]]
    did: str
    image_id: int
    snapshot_id: str


@pytest.fixture(params=["private", "public"])
def world(request: pytest.FixtureRequest, client: TestClient, make_user: MakeUser) -> World:
    owner = make_user()[1]
    other = make_user()[1]
    r = client.post(API, json={"name": "matrix", "visibility": request.param}, headers=owner)
    did = r.json()["id"]
    assert client.post(f"{API}/{did}/upload", files=parts(labeled_files(2)), headers=owner).status_code == 200
    image_id = client.get(f"{API}/{did}/images", headers=owner).json()["items"][0]["id"]
    snapshot_id = client.post(f"{API}/{did}/snapshots", json={}, headers=owner).json()["id"]
    return World(client, {"owner": owner, "other": other, "anonymous": {}}, did, image_id, snapshot_id)


Op = Callable[[World, dict[str, str]], Any]

# Reads first, then writes, the delete of the dataset last: one test walks the whole row.
OPS: dict[str, Op] = {
    "list": lambda w, h: w.client.get(API, headers=h),
    "get": lambda w, h: w.client.get(f"{API}/{w.did}", headers=h),
    "images": lambda w, h: w.client.get(f"{API}/{w.did}/images", headers=h),
    "image_file": lambda w, h: w.client.get(f"{API}/{w.did}/images/{w.image_id}/file", headers=h),
    "thumbnail": lambda w, h: w.client.get(f"{API}/{w.did}/images/{w.image_id}/thumbnail", headers=h),
    "annotations": lambda w, h: w.client.get(f"{API}/{w.did}/annotations", headers=h),
    "compatibility": lambda w, h: w.client.get(f"{API}/{w.did}/compatibility", headers=h),
    "snapshot_list": lambda w, h: w.client.get(f"{API}/{w.did}/snapshots", headers=h),
    "snapshot_get": lambda w, h: w.client.get(f"{API}/{w.did}/snapshots/{w.snapshot_id}", headers=h),
    "snapshot_annotations": lambda w, h: w.client.get(
        f"{API}/{w.did}/snapshots/{w.snapshot_id}/annotations", headers=h
    ),
    "patch": lambda w, h: w.client.patch(f"{API}/{w.did}", json={"description": "x"}, headers=h),
    "upload": lambda w, h: w.client.post(
        f"{API}/{w.did}/upload", files=parts({"images/new.png": png(color=(1, 2, 3))}), headers=h
    ),
    "snapshot_create": lambda w, h: w.client.post(f"{API}/{w.did}/snapshots", json={"name": "s"}, headers=h),
    "delete_image": lambda w, h: w.client.delete(f"{API}/{w.did}/images/{w.image_id}", headers=h),
    "delete": lambda w, h: w.client.delete(f"{API}/{w.did}", headers=h),
}

OWNER_STATUS = {"snapshot_create": 201}
WRITES = {"patch", "upload", "snapshot_create", "delete_image", "delete"}


def expected(op: str, who: str, visibility: str) -> int:
    if who == "anonymous":
        return 401
    if who == "owner" or op == "list":
        return OWNER_STATUS.get(op, 200)
    if visibility == "private":
        return 404
    return 403 if op in WRITES else 200


@pytest.mark.parametrize("who", ["owner", "other", "anonymous"])
def test_matrix(world: World, request: pytest.FixtureRequest, who: str) -> None:
    """One row of the matrix (a caller on a private or public dataset) across every operation."""
    visibility = request.node.callspec.params["world"]
    got = {op: OPS[op](world, world.headers[who]) for op in OPS}
    want = {op: expected(op, who, visibility) for op in OPS}
    assert {op: r.status_code for op, r in got.items()} == want, {op: r.text[:200] for op, r in got.items()}
    if who == "other":
        ids = [d["id"] for d in got["list"].json()]
        assert (world.did in ids) == (visibility == "public")
        for r in got.values():
            if r.status_code == 404:  # the same answer as for a dataset that does not exist
                assert "matrix" not in r.text
    if who != "owner":  # nothing changed for the owner
        owner = world.headers["owner"]
        ds = world.client.get(f"{API}/{world.did}", headers=owner).json()
        assert ds["description"] == "" and ds["num_images"] == 2 and ds["snapshots_count"] == 1


def test_unknown_dataset_is_404_like_a_private_one(client: TestClient, make_user: MakeUser) -> None:
    h = make_user()[1]
    assert client.get(f"{API}/{'0' * 32}", headers=h).status_code == 404
    assert client.get(f"{API}/not-an-id", headers=h).status_code == 404
