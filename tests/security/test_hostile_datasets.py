"""Hostile dataset uploads, through the REST API.

* Item 3: a 700-byte YAML alias bomb in data.yaml, JSON/YAML nested 100,000 deep, a 10 kB class
  name, 100,000 categories: each a 422 naming the file (and field), nothing stored; dataset lists
  (REST and the agent's) show at most 50 class names plus `class_count`.
* Item 8: a zip of many small, highly compressible entries is refused from its central directory
  before anything is extracted; a zip whose headers lie about sizes never writes more than they
  declare; the per-user storage quota answers 413 and stores nothing.
* Item 11: dataset and project names/descriptions with bidi-override or control characters: 422
  naming the field.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import DEFAULT_PASSWORD, make_settings
from tests.dataset_builders import API, dice, jpg, noisy_jpg, parts, png, zip_bytes
from tools.db.models import Dataset, DatasetImage, User
from tools.uploads import Staging

PROJECTS = "/api/v1/projects"

# 7 anchors, each a list of 9 references to the one before: 9 class names of 9**6 "lol"s (3.7 MB)
# each once expanded, from about 400 bytes (the reported bomb was 700 bytes and gave 25 MB names).
ALIAS_BOMB = (
    b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + b"".join(
        f"{cur}: &{cur} [{','.join([f'*{prev}'] * 9)}]\n".encode() for prev, cur in zip("abcdef", "bcdefg", strict=True)
    )
    + b"train: images/train\nval: images/train\nnames: *g\n"
)


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture
def owner(make_user: Any) -> dict[str, str]:
    headers: dict[str, str] = make_user()[1]
    return headers


def create(client: TestClient, h: dict[str, str], name: str = "ds") -> str:
    r = client.post(API, json={"name": name}, headers=h)
    assert r.status_code == 201, r.text
    did: str = r.json()["id"]
    return did


def up_zip(client: TestClient, h: dict[str, str], did: str, data: bytes) -> Any:
    return client.post(f"{API}/{did}/upload", files={"archive": ("data.zip", data, "application/zip")}, headers=h)


def up(client: TestClient, h: dict[str, str], did: str, files: dict[str, bytes]) -> Any:
    return client.post(f"{API}/{did}/upload", files=parts(files), headers=h)


def stored(client: TestClient, did: str) -> tuple[int, list[str], bool, list[str]]:
    """(image rows, stored keys, labeled, class names) of a dataset; the staging folder is empty."""
    app: Any = client.app
    with app.state.session_factory() as db:
        n = db.scalar(select(func.count()).select_from(DatasetImage).where(DatasetImage.dataset_id == did))
        ds = db.get(Dataset, did)
        labeled, names = bool(ds and ds.labeled), list(ds.class_names or []) if ds else []
    keys = [o.key for o in app.state.storage.external.list(f"datasets/{did}/")]
    staging = app.state.work_dir / "staging"
    assert not staging.exists() or not list(staging.iterdir()), "staging folder left behind"
    return int(n or 0), keys, labeled, names


EMPTY: tuple[int, list[str], bool, list[str]] = (0, [], False, [])


def yolo_zip(data_yaml: bytes) -> bytes:
    return zip_bytes(
        {"data.yaml": data_yaml, "images/train/a.jpg": jpg(20, 10), "labels/train/a.txt": b"0 0.5 0.5 0.5 0.5\n"}
    )


def dice_files(categories: list[dict[str, Any]], **top: Any) -> dict[str, bytes]:
    ann = dice([(1, "a.png", 8, 6)], categories=categories, **top)
    return {"up/images/a.png": png(), "up/annotations.json": json.dumps(ann).encode()}


@contextmanager
def client_with(db_url: str, folder: Path, **overrides: Any) -> Iterator[TestClient]:
    from web.main import create_app

    with TestClient(create_app(make_settings(db_url, folder, **overrides))) as c:
        yield c


def sign_up(client: TestClient, email: str = "quota@example.com") -> dict[str, str]:
    assert client.post("/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD}).status_code == 201
    tok = client.post("/api/v1/auth/token", data={"username": email, "password": DEFAULT_PASSWORD})
    return {"Authorization": f"Bearer {tok.json()['access_token']}"}


def assert_422(r: Any, file: str, *fragments: str) -> dict[str, Any]:
    assert r.status_code == 422, r.text[:2000]
    body: dict[str, Any] = r.json()
    assert body["location"]["file"] == file, body
    for fragment in fragments:
        assert fragment in body["detail"], body
    return body


# ------------------------------------------------------------------------ item 3: YAML / JSON


def test_yaml_alias_bomb_is_refused_naming_data_yaml(client: TestClient, owner: dict[str, str]) -> None:
    assert len(ALIAS_BOMB) < 800
    did = create(client, owner)
    body = assert_422(up_zip(client, owner, did, yolo_zip(ALIAS_BOMB)), "data.yaml", "alias")
    assert body["location"]["line"] == 1  # the first anchor
    assert len(json.dumps(body)) < 2000
    assert stored(client, did) == EMPTY


def test_yaml_merge_key_alias_is_refused(client: TestClient, owner: dict[str, str]) -> None:
    data = b"base: &b {train: images/train}\n<<: *b\nval: images/train\nnames: [cat]\n"
    did = create(client, owner)
    assert_422(up_zip(client, owner, did, yolo_zip(data)), "data.yaml", "alias")
    assert stored(client, did) == EMPTY


def test_yaml_nested_100k_deep_is_422_not_500(client: TestClient, owner: dict[str, str]) -> None:
    data = b"train: images/train\nnames: [cat]\nx: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    did = create(client, owner)
    assert_422(up_zip(client, owner, did, yolo_zip(data)), "data.yaml", "nested more than 64 levels")
    assert stored(client, did) == EMPTY


@pytest.mark.parametrize("name", ["annotations.json", "annotations/instances_train.json"])
def test_json_nested_100k_deep_is_422_not_500(client: TestClient, owner: dict[str, str], name: str) -> None:
    """A COCO-looking file (no format_version) nested 100k deep used to raise RecursionError (500)."""
    deep = b'{"images": [], "annotations": [], "categories": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    did = create(client, owner)
    body = assert_422(up_zip(client, owner, did, zip_bytes({name: deep, "images/a.png": png()})), name)
    assert "nested" in body["detail"]
    assert stored(client, did) == EMPTY


def test_dice_json_deeper_than_the_limit_is_refused(client: TestClient, owner: dict[str, str]) -> None:
    """Depth 100 parses fine in Python, but is beyond MAX_DOCUMENT_DEPTH (64): refused."""
    files = dice_files([{"id": 1, "name": "cat"}])
    ann = json.loads(files["up/annotations.json"])
    ann["extra"] = json.loads("[" * 100 + "]" * 100)
    files["up/annotations.json"] = json.dumps(ann).encode()
    did = create(client, owner)
    assert_422(up(client, owner, did, files), "annotations.json", "nested more than 64 levels")
    assert stored(client, did) == EMPTY


# ----------------------------------------------------------------------- item 3: class names


def test_10kb_class_name_in_data_yaml_is_refused(client: TestClient, owner: dict[str, str]) -> None:
    data = b"train: images/train\nval: images/train\nnames: [" + b"x" * 10_000 + b"]\n"
    did = create(client, owner)
    body = assert_422(up_zip(client, owner, did, yolo_zip(data)), "data.yaml", "10000 characters", "limit is 200")
    assert body["location"]["field"] == "names[0]"
    assert len(body["detail"]) < 500  # the name is not echoed back
    assert stored(client, did) == EMPTY


@pytest.mark.parametrize(
    ("category", "field", "fragment"),
    [
        ({"id": 1, "name": "c" * 10_000}, "categories[0].name", "10000 characters"),
        ({"id": 1, "name": "cat\u202egpj.exe"}, "categories[0].name", "U+202E"),
        ({"id": 1, "name": "cat\x07"}, "categories[0].name", "U+0007"),
        ({"id": 1, "name": "cat", "keypoints": ["nose", "k" * 5_000]}, "categories[0].keypoints[1]", "5000"),
    ],
    ids=["long-name", "bidi-name", "control-name", "long-keypoint"],
)
def test_dice_category_names_must_be_short_plain_strings(
    client: TestClient, owner: dict[str, str], category: dict[str, Any], field: str, fragment: str
) -> None:
    did = create(client, owner)
    body = assert_422(up(client, owner, did, dice_files([category])), "annotations.json", fragment)
    assert body["location"]["field"] == field
    assert stored(client, did) == EMPTY


def test_coco_category_name_is_checked(client: TestClient, owner: dict[str, str]) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
        "categories": [{"id": 1, "name": "n" * 10_000}],
    }
    did = create(client, owner)
    zipped = zip_bytes({"annotations/instances_train.json": json.dumps(coco).encode(), "images/a.png": png()})
    body = assert_422(up_zip(client, owner, did, zipped), "annotations/instances_train.json", "10000 characters")
    assert body["location"]["field"] == "categories[0].name"
    assert stored(client, did) == EMPTY


def test_100k_categories_are_refused(client: TestClient, owner: dict[str, str]) -> None:
    cats = [{"id": i, "name": f"c{i}"} for i in range(1, 100_001)]
    did = create(client, owner)
    body = assert_422(up(client, owner, did, dice_files(cats)), "annotations.json", "100000 categories")
    assert body["location"]["field"] == "categories"
    assert stored(client, did) == EMPTY


def test_category_limit_comes_from_settings(db_url: str, tmp_path: Path) -> None:
    with client_with(db_url, tmp_path, max_categories=3, max_label_chars=10) as c:
        h = sign_up(c)
        did = create(c, h)
        data = b"train: images/train\nval: images/train\nnames: [a, b, c, d]\n"
        body = assert_422(up_zip(c, h, did, yolo_zip(data)), "data.yaml", "4 categories", "limit is 3")
        assert body["location"]["field"] == "names"
        data = b"train: images/train\nval: images/train\nnames: {0: elevenchars}\n"
        assert_422(up_zip(c, h, did, yolo_zip(data)), "data.yaml", "limit is 10")
        assert stored(c, did) == EMPTY
        r = up_zip(c, h, did, yolo_zip(b"train: images/train\nval: images/train\nnames: [a, b, c]\n"))
        assert r.status_code == 200, r.text


# ----------------------------------------------------------------------- item 3: list output


@pytest.mark.slow
def test_lists_show_50_class_names_and_a_count(client: TestClient, owner: dict[str, str]) -> None:
    cats = [{"id": i, "name": f"class{i}"} for i in range(1, 121)]
    did = create(client, owner)
    r = up(client, owner, did, dice_files(cats))
    assert r.status_code == 200, r.text
    listed = next(d for d in client.get(API, headers=owner).json() if d["id"] == did)
    assert listed["class_names"] == [f"class{i}" for i in range(1, 51)]
    assert listed["class_count"] == 120
    one = client.get(f"{API}/{did}", headers=owner).json()
    assert len(one["class_names"]) == 120 and one["class_count"] == 120

    # A row stored before names were limited (the alias bomb's 25 MB names) is cut short on output.
    app: Any = client.app
    with app.state.session_factory() as db:
        ds = db.get(Dataset, did)
        ds.class_names = ["x" * 1_000_000] * 120
        db.commit()
    r = client.get(API, headers=owner)
    assert len(r.content) < 100_000
    listed = next(d for d in r.json() if d["id"] == did)
    assert len(listed["class_names"]) == 50 and all(len(n) <= 201 for n in listed["class_names"])
    assert len(client.get(f"{API}/{did}", headers=owner).content) < 100_000

    # the agent's listing ("what datasets do I have?") and its dataset info
    from agent.toolkit import dataset_info, list_visible_datasets
    from tools.context import ToolContext

    with app.state.session_factory() as db:
        email = client.get("/api/v1/auth/me", headers=owner).json()["email"]
        user = db.scalar(select(User).where(User.email == email))
        ctx = ToolContext(db=db, user=user, storage=app.state.storage, work_dir=app.state.work_dir)
        items = [d for d in list_visible_datasets(ctx) if d["id"] == did]
        info = dataset_info(ctx, did)
    assert len(json.dumps(items)) < 100_000 and items[0]["class_count"] == 120
    assert len(json.dumps(info)) < 100_000 and info["class_count"] == 120


# ------------------------------------------------------------------------------- item 8: zips


@pytest.fixture
def staged_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes each upload's staging folder held when it was cleaned up (what it wrote to disk)."""
    seen: list[int] = []
    original = Staging.cleanup

    def spy(self: Staging) -> None:
        if self.root.exists():
            seen.append(sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()))
        original(self)

    monkeypatch.setattr(Staging, "cleanup", spy)
    return seen


def test_zip_of_many_small_compressible_entries_is_refused_before_extracting(
    client: TestClient, owner: dict[str, str], staged_bytes: list[int]
) -> None:
    """400 entries of 256 KiB zeros: each under the 1 MiB per-entry ratio threshold, 100 MiB in all
    from a ~150 kB archive. Refused from the central directory: only the archive is on disk."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/ok.png", png())
        for i in range(400):
            zf.writestr(f"images/{i}.png", bytes(256 << 10))
    data = buf.getvalue()
    assert len(data) < 400_000
    did = create(client, owner)
    r = up_zip(client, owner, did, data)
    assert r.status_code == 413, r.text
    body = r.json()
    assert "zip bomb" in body["detail"] and body["location"]["file"] == "data.zip"
    assert staged_bytes and max(staged_bytes) <= len(data) + 4096  # nothing was extracted
    assert stored(client, did)[:3] == (0, [], False)


def _deflated_zip_claiming(name: str, real: bytes, declared: int) -> bytes:
    """A deflated zip whose headers (local and central) claim `declared` uncompressed bytes."""
    good = zip_bytes({name: real})
    size, fake = len(real).to_bytes(4, "little"), declared.to_bytes(4, "little")
    data = bytearray(good)
    assert data[22:26] == size
    data[22:26] = fake
    cd = data.rfind(b"PK\x01\x02")
    assert data[cd + 24 : cd + 28] == size
    data[cd + 24 : cd + 28] = fake
    return bytes(data)


def test_zip_whose_headers_lie_about_sizes_never_writes_more_than_declared(
    client: TestClient, owner: dict[str, str], staged_bytes: list[int]
) -> None:
    """64 MiB of zeros declared as 1 kB: the header checks pass (small, low ratio), extraction
    stops at the declared size and the entry is refused (422), nothing stored."""
    data = _deflated_zip_claiming("images/a.png", bytes(64 << 20), declared=1000)
    did = create(client, owner)
    r = up_zip(client, owner, did, data)
    assert r.status_code in (413, 422), r.text
    assert "a.png" in r.json()["detail"]
    assert staged_bytes and max(staged_bytes) <= len(data) + 1000
    assert stored(client, did)[:3] == (0, [], False)


# ------------------------------------------------------------------------------ item 8: quota


def test_storage_quota_exceeded_is_413_and_nothing_is_half_written(db_url: str, tmp_path: Path) -> None:
    first = {f"up/{i}.jpg": noisy_jpg(seed=i) for i in range(3)}
    second = {f"up/{i}.jpg": noisy_jpg(seed=10 + i) for i in range(3)}
    size_first = sum(len(b) for b in first.values())
    quota = size_first + len(second["up/0.jpg"])  # room for exactly one more image, not three
    with client_with(db_url, tmp_path, user_storage_quota_bytes=quota) as c:
        h = sign_up(c)
        d1, d2 = create(c, h, "one"), create(c, h, "two")
        r = up(c, h, d1, first)
        assert r.status_code == 200, r.text
        assert r.json()["dataset"]["total_bytes"] == size_first

        r = up(c, h, d2, second)
        assert r.status_code == 413, r.text
        body = r.json()
        assert "quota" in body["detail"] and body["quota_bytes"] == quota and body["used_bytes"] == size_first
        assert stored(c, d2)[:3] == (0, [], False)
        assert len(c.get(f"{API}/{d1}/images", headers=h).json()["items"]) == 3

        # one image still fits exactly; then the user is full and the next upload is refused before
        # its body is read (a body that is not even multipart still gets 413, not 422)
        r = up(c, h, d2, {"up/0.jpg": second["up/0.jpg"]})
        assert r.status_code == 200, r.text
        small = {"up/x.png": png()}
        assert up(c, h, d2, small).status_code == 413
        r = c.post(f"{API}/{d2}/upload", content=b"not multipart", headers={**h, "Content-Type": "text/plain"})
        assert r.status_code == 413, r.text
        assert stored(c, d2)[0] == 1

        # another user is not affected by this user's usage
        other = sign_up(c, "other@example.com")
        d3 = create(c, other, "three")
        assert up(c, other, d3, small).status_code == 200


# ------------------------------------------------------------------------- item 11: names


BAD_TEXT = [
    ("rlo", "invoice\u202egpj.exe", "U+202E"),
    ("lri", "a\u2066b", "U+2066"),
    ("rlm", "a\u200fb", "U+200F"),
    ("control", "a\x1bb", "U+001B"),
]


@pytest.mark.parametrize(("case", "text", "code"), BAD_TEXT, ids=[c[0] for c in BAD_TEXT])
def test_dataset_name_and_description_refuse_bidi_and_control_characters(
    client: TestClient, owner: dict[str, str], case: str, text: str, code: str
) -> None:
    r = client.post(API, json={"name": text}, headers=owner)
    assert r.status_code == 422, r.text
    assert r.json()["location"]["field"] == "name" and code in r.json()["detail"]
    did = create(client, owner, f"plain-{case}")
    for field in ("name", "description"):
        r = client.patch(f"{API}/{did}", json={field: text}, headers=owner)
        assert r.status_code == 422, r.text
        assert r.json()["location"]["field"] == field and code in r.json()["detail"]
    r = client.post(API, json={"name": f"described-{case}", "description": text}, headers=owner)
    assert r.status_code == 422 and r.json()["location"]["field"] == "description"
    ok = client.patch(f"{API}/{did}", json={"description": "line one\nline two\tend"}, headers=owner)
    assert ok.status_code == 200, ok.text
    assert client.get(f"{API}/{did}", headers=owner).json()["name"] == f"plain-{case}"


@pytest.mark.parametrize(("case", "text", "code"), BAD_TEXT, ids=[c[0] for c in BAD_TEXT])
def test_project_name_and_description_refuse_bidi_and_control_characters(
    client: TestClient, owner: dict[str, str], case: str, text: str, code: str
) -> None:
    r = client.post(PROJECTS, json={"name": text}, headers=owner)
    assert r.status_code == 422, r.text
    assert r.json()["location"]["field"] == "name" and code in r.json()["detail"]
    r = client.post(PROJECTS, json={"name": f"p-{case}", "description": text}, headers=owner)
    assert r.status_code == 422 and r.json()["location"]["field"] == "description"
    r = client.post(PROJECTS, json={"name": f"p-{case}"}, headers=owner)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    for field in ("name", "description"):
        r = client.patch(f"{PROJECTS}/{pid}", json={field: text}, headers=owner)
        assert r.status_code == 422, r.text
        assert r.json()["location"]["field"] == field and code in r.json()["detail"]
    assert client.get(f"{PROJECTS}/{pid}", headers=owner).json()["name"] == f"p-{case}"
