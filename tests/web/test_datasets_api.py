"""`/api/v1/datasets`: happy paths and every bad input (status + a message naming the
file/line/field + nothing written). Runs on SQLite and PostgreSQL (`db_url`), local storage."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from tests.conftest import MakeUser
from tests.dataset_builders import (
    API,
    dice,
    jpg,
    labeled_files,
    noisy_jpg,
    parts,
    png,
    raw_info,
    symlink_info,
    zip_bytes,
    zip_marked_encrypted,
    zip_raw_entries,
)
from tools.db.models import Dataset, DatasetImage


@pytest.fixture
def owner(make_user: MakeUser) -> dict[str, str]:
    return make_user()[1]


def create(client: TestClient, h: dict[str, str], name: str = "ds", visibility: str = "private") -> str:
    r = client.post(API, json={"name": name, "visibility": visibility}, headers=h)
    assert r.status_code == 201, r.text
    did: str = r.json()["id"]
    return did


def up(client: TestClient, h: dict[str, str], did: str, files: dict[str, bytes], **params: Any) -> Any:
    return client.post(f"{API}/{did}/upload", files=parts(files), headers=h, params=params)


def up_zip(client: TestClient, h: dict[str, str], did: str, data: bytes, **params: Any) -> Any:
    return client.post(
        f"{API}/{did}/upload", files={"archive": ("data.zip", data, "application/zip")}, headers=h, params=params
    )


def state(client: TestClient, did: str) -> tuple[int, list[str], bool]:
    """(image rows, stored keys, labeled) — what an upload could have written."""
    app: Any = client.app
    with app.state.session_factory() as db:
        n = db.scalar(select(func.count()).select_from(DatasetImage).where(DatasetImage.dataset_id == did))
    keys = [o.key for o in app.state.storage.external.list(f"datasets/{did}/")]
    staging = app.state.work_dir / "staging"
    assert not staging.exists() or not list(staging.iterdir()), "staging folder left behind"
    with app.state.session_factory() as db:
        ds = db.get(Dataset, did)
        labeled = bool(ds and ds.labeled)
    return int(n or 0), keys, labeled


def ann_bytes(d: dict[str, Any]) -> bytes:
    return json.dumps(d, indent=1).encode()


# ------------------------------------------------------------------------------ happy paths


def test_anonymous_gets_401(client: TestClient) -> None:
    assert client.get(API).status_code == 401
    assert client.post(API, json={"name": "x"}).status_code == 401


def test_create_get_patch_list_delete(client: TestClient, owner: dict[str, str]) -> None:
    r = client.post(API, json={"name": "cats", "description": "d"}, headers=owner)
    assert r.status_code == 201
    body = r.json()
    for key in (
        "id",
        "name",
        "description",
        "visibility",
        "owner_id",
        "labeled",
        "num_images",
        "num_annotations",
        "class_names",
        "capabilities",
        "created_at",
        "updated_at",
        "is_demo",
        "snapshots_count",
    ):
        assert key in body
    assert body["visibility"] == "private" and body["labeled"] is False
    assert client.post(API, json={"name": "cats"}, headers=owner).status_code == 409
    assert client.post(API, json={"name": ""}, headers=owner).status_code == 422
    assert client.post(API, json={"name": "a\x01b"}, headers=owner).status_code == 422
    assert client.post(API, json={"name": "x" * 201}, headers=owner).status_code == 422
    did = body["id"]
    r = client.patch(f"{API}/{did}", json={"name": "felines", "visibility": "public"}, headers=owner)
    assert r.status_code == 200 and r.json()["name"] == "felines" and r.json()["visibility"] == "public"
    create(client, owner, "dogs")
    r = client.get(API, params={"q": "feli"}, headers=owner)
    assert [d["name"] for d in r.json()] == ["felines"] and r.headers["x-total-count"] == "1"
    r = client.get(API, params={"sort": "name", "limit": 1}, headers=owner)
    assert [d["name"] for d in r.json()] == ["dogs"] and r.headers["x-total-count"] == "2"
    assert client.get(API, params={"sort": "bogus"}, headers=owner).status_code == 422
    up(client, owner, did, labeled_files(2))
    assert state(client, did)[1]
    r = client.delete(f"{API}/{did}", headers=owner)
    assert r.status_code == 200 and r.json()["objects_deleted"] == 3
    assert client.get(f"{API}/{did}", headers=owner).status_code == 404
    app: Any = client.app
    assert list(app.state.storage.external.list(f"datasets/{did}/")) == []


def test_folder_upload_keeps_tree(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    files = labeled_files(3, top="mydata", sub="train/cats")
    files["mydata/.DS_Store"] = b"\0\0junk"
    files["mydata/images/Thumbs.db"] = b"junk"
    r = up(client, owner, did, files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added"] == 3 and body["format"] == "dice" and body["stripped_prefix"] == "mydata"
    assert body["ignored"] == [".DS_Store", "images/Thumbs.db"]
    ds = body["dataset"]
    assert ds["labeled"] and ds["num_images"] == 3 and ds["num_annotations"] == 3
    assert ds["class_names"] == ["cat", "dog"]
    assert ds["capabilities"]["object_detection"]["status"] == "native"
    n, keys, labeled = state(client, did)
    assert n == 3 and labeled
    assert f"datasets/{did}/images/train/cats/1.png" in keys and f"datasets/{did}/annotations.json" in keys
    r = client.get(f"{API}/{did}/annotations", headers=owner)
    assert r.status_code == 200 and r.content == files["mydata/annotations.json"]


def test_zip_upload(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    r = up_zip(client, owner, did, zip_bytes(labeled_files(2, top="export")))
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 2 and r.json()["dataset"]["labeled"]


def test_yolo_zip_is_imported(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    files = {
        "data.yaml": b"path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n",
        "images/train/a.jpg": jpg(20, 10),
        "labels/train/a.txt": b"0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.2 0.2\n",
        "images/val/b.jpg": jpg(20, 10, (1, 2, 3)),
        "labels/val/b.txt": b"1 0.5 0.5 0.4 0.4\n",
    }
    r = up_zip(client, owner, did, zip_bytes(files))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "yolo" and body["added"] == 2
    assert body["dataset"]["class_names"] == ["cat", "dog"] and body["dataset"]["num_annotations"] == 3
    ann = client.get(f"{API}/{did}/annotations", headers=owner).json()
    assert ann["format_version"] == "1.0"
    assert sorted(i["file_name"] for i in ann["images"]) == ["train/a.jpg", "val/b.jpg"]
    box = next(a["bbox"] for a in ann["annotations"] if a["category_id"] == ann["categories"][0]["id"])
    assert box == pytest.approx([5, 2.5, 10, 5])


def test_yolo_label_class_beyond_names(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    files = {
        "data.yaml": b"train: images/train\nval: images/train\nnames: [cat]\n",
        "images/train/a.jpg": jpg(),
        "labels/train/a.txt": b"0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n",
    }
    r = up_zip(client, owner, did, zip_bytes(files))
    assert r.status_code == 422, r.text
    assert "a.txt" in r.json()["detail"]
    assert r.json()["location"]["line"] == 2
    assert state(client, did)[:2] == (0, [])


def test_unlabeled_then_labeled_then_conflict(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    r = up(client, owner, did, {"shots/a.png": png(), "shots/b.png": png(color=(0, 255, 0))})
    assert r.status_code == 200 and r.json()["dataset"]["labeled"] is False
    assert r.json()["stripped_prefix"] == "shots"
    # same path, same bytes -> skipped; same path, other bytes -> 409 naming the file
    r = up(client, owner, did, {"images/a.png": png()})
    assert r.status_code == 200 and r.json()["skipped"] == ["a.png"] and r.json()["added"] == 0
    r = up(client, owner, did, {"images/a.png": png(color=(9, 9, 9))})
    assert r.status_code == 409 and "images/a.png" in r.json()["detail"]
    # labeled upload into the unlabeled dataset: may reference the images already there
    ann = dice([(1, "a.png", 8, 6), (2, "b.png", 8, 6), (3, "c.png", 8, 6)])
    r = up(client, owner, did, {"annotations.json": ann_bytes(ann), "images/c.png": png(color=(0, 0, 255))})
    assert r.status_code == 200, r.text
    assert r.json()["dataset"]["labeled"] and r.json()["dataset"]["num_images"] == 3
    before = state(client, did)
    r = up(client, owner, did, labeled_files(1, top="again"))
    assert r.status_code == 409 and "never merged into a labeled dataset" in r.json()["detail"]
    assert state(client, did) == before
    # unlabeled images can still be added to a labeled dataset
    r = up(client, owner, did, {"images/extra/d.png": png(color=(3, 3, 3))})
    assert r.status_code == 200 and r.json()["added"] == 1


def test_gallery_pagination_prefix_and_annotations(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    files = labeled_files(5, top="", sub="train")
    files["images/val/9.png"] = png(color=(7, 7, 7))
    ann = json.loads(files["annotations.json"])
    ann["images"].append({"id": 9, "file_name": "val/9.png", "width": 8, "height": 6})
    files["annotations.json"] = ann_bytes(ann)
    assert up(client, owner, did, files).status_code == 200
    r = client.get(f"{API}/{did}/images", params={"limit": 2, "offset": 0}, headers=owner)
    page = r.json()
    assert page["total"] == 6 and [i["file_name"] for i in page["items"]] == ["train/1.png", "train/2.png"]
    item = page["items"][0]
    assert (item["width"], item["height"], item["size_bytes"], item["num_annotations"]) == (
        8,
        6,
        len(files["images/train/1.png"]),
        1,
    )
    assert "annotations" not in item or item["annotations"] is None
    r = client.get(f"{API}/{did}/images", params={"limit": 2, "offset": 4}, headers=owner)
    assert [i["file_name"] for i in r.json()["items"]] == ["train/5.png", "val/9.png"]
    r = client.get(f"{API}/{did}/images", params={"prefix": "val/", "include_annotations": True}, headers=owner)
    assert r.json()["total"] == 1 and r.json()["items"][0]["annotations"] == []
    r = client.get(f"{API}/{did}/images", params={"prefix": "train/", "include_annotations": True}, headers=owner)
    assert r.json()["items"][0]["annotations"][0]["bbox"] == [1, 1, 3, 3]


def test_image_file_and_thumbnail(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    big = noisy_jpg(300, 200)
    assert up(client, owner, did, {"images/big.jpg": big, "images/small.png": png()}).status_code == 200
    items = client.get(f"{API}/{did}/images", headers=owner).json()["items"]
    big_id = next(i["id"] for i in items if i["file_name"] == "big.jpg")
    r = client.get(f"{API}/{did}/images/{big_id}/file", headers=owner)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == big
    r = client.get(f"{API}/{did}/images/{big_id}/thumbnail", params={"size": 128}, headers=owner)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"]
    im = Image.open(io.BytesIO(r.content))
    assert im.format == "JPEG" and max(im.size) == 128 and im.size == (128, 85)
    app: Any = client.app
    assert app.state.storage.external.exists(f"datasets/{did}/thumbnails/128/{big_id}.jpg")
    etag = r.headers["etag"]
    r2 = client.get(f"{API}/{did}/images/{big_id}/thumbnail", headers={**owner, "If-None-Match": etag})
    assert r2.status_code == 304
    r3 = client.get(f"{API}/{did}/images/{big_id}/thumbnail", headers=owner)
    assert r3.content == r.content  # served from the cache
    assert client.get(f"{API}/{did}/images/999999/thumbnail", headers=owner).status_code == 404


def test_compatibility_endpoint(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    up(client, owner, did, labeled_files(2))
    r = client.get(f"{API}/{did}/compatibility", params={"task_type": "image_classification"}, headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "convertible" and r.json()["reason"]
    r = client.get(f"{API}/{did}/compatibility", headers=owner)
    assert set(r.json()["tasks"]) >= {"object_detection", "instance_segmentation"}
    r = client.get(f"{API}/{did}/compatibility", params={"task_type": "nope"}, headers=owner)
    assert r.status_code == 422


def test_unlabeled_annotations_404(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    up(client, owner, did, {"images/a.png": png()})
    r = client.get(f"{API}/{did}/annotations", headers=owner)
    assert r.status_code == 404 and "unlabeled" in r.json()["detail"]


# ------------------------------------------------------------------------------ bad inputs

GOOD_IMG = {"images/a.png": png(), "images/b.png": png(color=(0, 255, 0))}
GOOD_IMAGES = [(1, "a.png", 8, 6), (2, "b.png", 8, 6)]


def _ann(**changes: Any) -> bytes:
    d = dice(GOOD_IMAGES)
    for key, value in changes.items():
        d[key] = value
    return ann_bytes(d)


def _box(bbox: list[float], **extra: Any) -> list[dict[str, Any]]:
    return [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox, **extra}]


BAD_UPLOADS: list[tuple[str, dict[str, bytes], int, list[str], dict[str, Any]]] = [
    # id, files, status, fragments that must be in the message, expected location subset
    (
        "malformed-json",
        {**GOOD_IMG, "annotations.json": b'{"format_version": "1.0",\n "images": [\n  {"id": 1,, }\n]}'},
        422,
        ["annotations.json"],
        {"file": "annotations.json", "line": 3},
    ),
    (
        "wrong-format-version",
        {**GOOD_IMG, "annotations.json": _ann(format_version="2.0")},
        422,
        ["format_version", "2.0"],
        {"file": "annotations.json"},
    ),
    (
        "unknown-category",
        {
            **GOOD_IMG,
            "annotations.json": _ann(annotations=[{"id": 1, "image_id": 1, "category_id": 42, "bbox": [1, 1, 2, 2]}]),
        },
        422,
        ["42"],
        {"field": "annotations[0].category_id"},
    ),
    (
        "unknown-image",
        {
            **GOOD_IMG,
            "annotations.json": _ann(annotations=[{"id": 1, "image_id": 77, "category_id": 1, "bbox": [1, 1, 2, 2]}]),
        },
        422,
        ["77"],
        {"field": "annotations[0].image_id"},
    ),
    (
        "duplicate-image-id",
        {**GOOD_IMG, "annotations.json": ann_bytes(dice([(1, "a.png", 8, 6), (1, "b.png", 8, 6)], annotations=[]))},
        422,
        ["duplicate image id"],
        {"field": "images[1].id"},
    ),
    (
        "duplicate-annotation-id",
        {**GOOD_IMG, "annotations.json": _ann(annotations=_box([1, 1, 2, 2]) + _box([2, 2, 2, 2]))},
        422,
        ["duplicate"],
        {"field": "annotations[1].id"},
    ),
    (
        "bbox-outside",
        {**GOOD_IMG, "annotations.json": _ann(annotations=_box([5, 1, 30, 2]))},
        422,
        ["bbox"],
        {"field": "annotations[0].bbox"},
    ),
    (
        "bbox-zero-width",
        {**GOOD_IMG, "annotations.json": _ann(annotations=_box([1, 1, 0, 2]))},
        422,
        ["bbox"],
        {"field": "annotations[0].bbox"},
    ),
    (
        "polygon-too-few-points",
        {**GOOD_IMG, "annotations.json": _ann(annotations=_box([1, 1, 2, 2], segmentation=[[1, 1, 2, 2]]))},
        422,
        ["3"],
        {"field": "annotations[0].segmentation[0]"},
    ),
    (
        "polygon-odd-coordinates",
        {**GOOD_IMG, "annotations.json": _ann(annotations=_box([1, 1, 2, 2], segmentation=[[1, 1, 2, 2, 3]]))},
        422,
        ["odd"],
        {"field": "annotations[0].segmentation[0]"},
    ),
    (
        "missing-image-file",
        {"images/a.png": png(), "annotations.json": _ann()},
        422,
        ["b.png"],
        {"field": "images[1].file_name"},
    ),
    (
        "declared-size-differs",
        {**GOOD_IMG, "annotations.json": ann_bytes(dice([(1, "a.png", 8, 6), (2, "b.png", 80, 60)]))},
        422,
        ["b.png"],
        {"field": "images[1]"},
    ),
    (
        "corrupt-image",
        {"images/a.png": b"\x89PNG\r\n\x1a\nthis is no png"},
        422,
        ["images/a.png"],
        {"file": "images/a.png"},
    ),
    (
        "truncated-jpeg",
        {"images/t.jpg": noisy_jpg()[:-400]},
        422,
        ["images/t.jpg", "truncated"],
        {"file": "images/t.jpg"},
    ),
    ("zero-byte", {"images/empty.png": b""}, 422, ["images/empty.png", "0 bytes"], {"file": "images/empty.png"}),
    (
        "non-image-in-images",
        {**GOOD_IMG, "images/notes.txt": b"hi"},
        422,
        ["images/notes.txt", "not an image"],
        {"file": "images/notes.txt"},
    ),
    (
        "image-outside-images-dir",
        {**GOOD_IMG, "c.png": png(), "annotations.json": _ann()},
        422,
        ["c.png", "outside images/"],
        {"file": "c.png"},
    ),
    (
        "unsafe-file-name-in-annotations",
        {**GOOD_IMG, "annotations.json": ann_bytes(dice([(1, "../a.png", 8, 6)], annotations=[]))},
        422,
        ["'..'"],
        {"field": "images[0].file_name"},
    ),
    (
        "format-images-with-annotations",
        {**GOOD_IMG, "annotations.json": _ann()},
        422,
        ["format=images"],
        {"file": "annotations.json"},
    ),
]


@pytest.mark.parametrize(
    ("case", "files", "status", "fragments", "location"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS]
)
def test_bad_folder_upload(
    client: TestClient,
    owner: dict[str, str],
    case: str,
    files: dict[str, bytes],
    status: int,
    fragments: list[str],
    location: dict[str, Any],
) -> None:
    did = create(client, owner)
    before = state(client, did)
    params = {"format": "images"} if case == "format-images-with-annotations" else {}
    r = up(client, owner, did, {f"upload/{k}": v for k, v in files.items()}, **params)
    assert r.status_code == status, r.text
    body = r.json()
    for fragment in fragments:
        assert fragment in body["detail"], body
    loc = body.get("location") or {}
    for key, value in location.items():
        if key == "field":
            assert str(loc.get("field", "")).startswith(value), body
        else:
            assert loc.get(key) == value, body
    assert state(client, did) == before == (0, [], False)


def _zip_case(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    return zip_raw_entries([(raw_info("images/ok.png"), png()), *entries])


BAD_ZIPS: list[tuple[str, bytes, int, str]] = [
    ("dotdot", _zip_case([(raw_info("../evil.png"), png())]), 422, "'..'"),
    ("nested-dotdot", _zip_case([(raw_info("images/../../evil.png"), png())]), 422, "'..'"),
    ("absolute", _zip_case([(raw_info("/tmp/evil.png"), png())]), 422, "absolute"),
    ("symlink", _zip_case([(symlink_info("images/link.png"), b"/etc/passwd")]), 422, "symbolic link"),
    ("control-char", _zip_case([(raw_info("images/a\x1b.png"), png())]), 422, "control character"),
    ("encrypted", zip_marked_encrypted("images/a.png", png()), 422, "encrypted"),
    ("bomb-ratio", zip_bytes({"images/ok.png": png(), "images/bomb.png": b"\0" * (3 << 20)}), 413, "zip bomb"),
    ("not-a-zip", b"PK\x03\x04 not really", 422, "not a valid zip"),
]


@pytest.mark.parametrize(("case", "data", "status", "fragment"), BAD_ZIPS, ids=[c[0] for c in BAD_ZIPS])
def test_bad_zip_upload(
    client: TestClient, owner: dict[str, str], case: str, data: bytes, status: int, fragment: str
) -> None:
    did = create(client, owner)
    r = up_zip(client, owner, did, data)
    assert r.status_code == status, r.text
    assert fragment in r.json()["detail"]
    assert state(client, did) == (0, [], False)


def test_control_char_in_folder_part_name(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="images/a\x01.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png() + b"\r\n--XyZ--\r\n"
    )
    r = client.post(
        f"{API}/{did}/upload", content=body, headers={**owner, "Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    assert r.status_code == 422 and "control character" in r.json()["detail"]
    assert state(client, did) == (0, [], False)


def test_upload_must_be_multipart_with_files(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    r = client.post(f"{API}/{did}/upload", json={"x": 1}, headers=owner)
    assert r.status_code == 422 and "multipart" in r.json()["detail"]
    r = client.post(f"{API}/{did}/upload", data={"format": "auto"}, files={"other": ("a.png", png())}, headers=owner)
    assert r.status_code == 422 and "files" in r.json()["detail"]
    r = up(client, owner, did, {"up/.DS_Store": b"x"})
    assert r.status_code == 422 and "no files" in r.json()["detail"]
    assert state(client, did) == (0, [], False)


def test_empty_upload_and_unknown_format(client: TestClient, owner: dict[str, str]) -> None:
    did = create(client, owner)
    r = up(client, owner, did, GOOD_IMG, format="tiff-stack")
    assert r.status_code == 422
