"""Snapshots: frozen annotations (images shared), versions, broken after an image is deleted."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakeUser
from tests.dataset_builders import API, labeled_files, parts, png


@pytest.fixture
def owner(make_user: MakeUser) -> dict[str, str]:
    return make_user()[1]


def new_dataset(client: TestClient, h: dict[str, str], files: dict[str, bytes] | None) -> str:
    did: str = client.post(API, json={"name": "snap"}, headers=h).json()["id"]
    if files:
        assert client.post(f"{API}/{did}/upload", files=parts(files), headers=h).status_code == 200
    return did


def test_unlabeled_has_nothing_to_snapshot(client: TestClient, owner: dict[str, str]) -> None:
    did = new_dataset(client, owner, {"images/a.png": png()})
    r = client.post(f"{API}/{did}/snapshots", json={}, headers=owner)
    assert r.status_code == 409 and "nothing to snapshot" in r.json()["detail"]


def test_snapshot_versions_and_frozen_annotations(client: TestClient, owner: dict[str, str]) -> None:
    files = labeled_files(3)
    did = new_dataset(client, owner, files)
    live_then = client.get(f"{API}/{did}/annotations", headers=owner).content
    s1 = client.post(f"{API}/{did}/snapshots", json={"name": "first"}, headers=owner)
    assert s1.status_code == 201
    snap1 = s1.json()
    assert snap1["version"] == 1 and snap1["status"] == "ok" and snap1["name"] == "first"
    assert snap1["num_images"] == 3 and snap1["num_annotations"] == 3
    s2 = client.post(f"{API}/{did}/snapshots", headers=owner).json()
    assert s2["version"] == 2
    app: Any = client.app
    keys = [o.key for o in app.state.storage.external.list(f"datasets/{did}/")]
    assert f"datasets/{did}/snapshots/{snap1['id']}/annotations.json" in keys
    assert sum("/images/" in k for k in keys) == 3  # images are shared, not copied
    listing = client.get(f"{API}/{did}/snapshots", headers=owner).json()
    assert [s["version"] for s in listing] == [2, 1]
    assert client.get(f"{API}/{did}", headers=owner).json()["snapshots_count"] == 2

    # change the live annotations by deleting an image; the snapshot keeps the old ones
    img = next(
        i for i in client.get(f"{API}/{did}/images", headers=owner).json()["items"] if i["file_name"] == "a/2.png"
    )
    r = client.delete(f"{API}/{did}/images/{img['id']}", headers=owner)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["removed_annotations"] == 1
    assert sorted(s["version"] for s in body["broken_snapshots"]) == [1, 2]
    assert all(s["missing_files"] == ["a/2.png"] for s in body["broken_snapshots"])
    assert body["dataset"]["num_images"] == 2 and body["dataset"]["num_annotations"] == 2

    live_now = client.get(f"{API}/{did}/annotations", headers=owner).json()
    assert [i["file_name"] for i in live_now["images"]] == ["a/1.png", "a/3.png"]
    assert all(a["image_id"] != 2 for a in live_now["annotations"])
    frozen = client.get(f"{API}/{did}/snapshots/{snap1['id']}/annotations", headers=owner)
    assert frozen.status_code == 200 and frozen.content == live_then

    got = client.get(f"{API}/{did}/snapshots/{snap1['id']}", headers=owner).json()
    assert got["status"] == "broken" and got["missing_files"] == ["a/2.png"]
    assert not app.state.storage.external.exists(f"datasets/{did}/images/a/2.png")

    # a snapshot taken now is fine
    s3 = client.post(f"{API}/{did}/snapshots", headers=owner).json()
    assert s3["version"] == 3 and s3["status"] == "ok" and s3["num_images"] == 2


def test_deleting_an_unreferenced_image_breaks_nothing(client: TestClient, owner: dict[str, str]) -> None:
    did = new_dataset(client, owner, labeled_files(1))
    assert (
        client.post(f"{API}/{did}/upload", files=parts({"images/extra.png": png()}), headers=owner).status_code == 200
    )
    client.post(f"{API}/{did}/snapshots", headers=owner)
    extra = next(
        i for i in client.get(f"{API}/{did}/images", headers=owner).json()["items"] if i["file_name"] == "extra.png"
    )
    r = client.delete(f"{API}/{did}/images/{extra['id']}", headers=owner)
    assert r.status_code == 200 and r.json()["broken_snapshots"] == [] and r.json()["removed_annotations"] == 0


def test_unknown_snapshot(client: TestClient, owner: dict[str, str]) -> None:
    did = new_dataset(client, owner, labeled_files(1))
    assert client.get(f"{API}/{did}/snapshots/{'f' * 32}", headers=owner).status_code == 404
    assert client.get(f"{API}/{did}/snapshots/nope/annotations", headers=owner).status_code == 404
