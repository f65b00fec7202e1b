"""A user's own weights ("use my weights"): uploads checked like the registry's imports, atomic
(a bad file leaves no row and no object), bounded by a size limit and the storage quota, private
to their owner (another user gets 404); a job that names them (``init_weights``: an id, or "mine")
starts from them instead of the registry, and its ``pretrained`` records the file and its sha256."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import MakeUser, make_settings
from tests.live_server import API, classification_files, upload_dataset, wait_for, write_fake_python
from tests.tools.test_weights import safetensors_bytes, small_safetensors, torch_zip
from tools import weights as weights_tools
from tools.db.models import Job, UserWeights
from web.config import Settings
from web.main import create_app

MINE = f"{API}/weights/mine"


class _Evil:
    def __reduce__(self) -> Any:
        import os

        return (os.system, ("echo owned",))


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    fake = write_fake_python(tmp_path / "fake-python", mode="sleep", seconds=120)
    return make_settings(
        db_url,
        tmp_path,
        trainer_python_timm=fake,
        trainer_python_ultralytics=fake,
        trainer_python_transformers=fake,
        max_concurrent_jobs=1,
        admin_emails="boss@example.com",
    )


@pytest.fixture(autouse=True)
def _cleanup(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


def upload(
    client: TestClient, headers: dict[str, str], data: bytes, name: str = "my-r18.safetensors", **form: Any
) -> Any:
    return client.post(
        MINE,
        data={"model": "resnet18", **form},
        files={"file": (name, data, "application/octet-stream")},
        headers=headers,
    )


def field_of(r: Any) -> Any:
    return (r.json().get("location") or {}).get("field")


def user_objects(client: TestClient) -> list[str]:
    storage = client.app.state.storage  # type: ignore[attr-defined]
    return sorted(o.key for o in storage.internal.list("weights/user/"))


def rows(client: TestClient) -> list[UserWeights]:
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        return list(db.scalars(select(UserWeights)))


# ------------------------------------------------------------------------------- uploads


def test_upload_list_get_delete_and_another_user_gets_404(client: TestClient, make_user: MakeUser) -> None:
    alice, a = make_user()
    _, b = make_user()
    data = small_safetensors()
    r = upload(client, a, data, name="my r18 (v2).safetensors")
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["framework"] == "timm" and w["model_name"] == "resnet18"
    assert w["name"] == "my_r18__v2_.safetensors"  # cleaned: it names a stored object
    assert w["sha256"] == hashlib.sha256(data).hexdigest() and w["size"] == len(data)
    key = f"weights/user/{alice['id']}/{w['id']}/my_r18__v2_.safetensors"
    assert user_objects(client) == [key]
    storage = client.app.state.storage  # type: ignore[attr-defined]
    assert storage.internal.get_bytes(key) == data

    assert [x["id"] for x in client.get(MINE, headers=a).json()] == [w["id"]]
    assert client.get(MINE, params={"model": "resnet34"}, headers=a).json() == []
    assert client.get(f"{MINE}/{w['id']}", headers=a).json()["sha256"] == w["sha256"]

    # another user: nothing listed, 404 for the id (exactly like an id that does not exist)
    assert client.get(MINE, headers=b).json() == []
    for method in ("GET", "DELETE"):
        other = client.request(method, f"{MINE}/{w['id']}", headers=b)
        unknown = client.request(method, f"{MINE}/{w['id'] + 1000}", headers=b)
        assert other.status_code == unknown.status_code == 404
        assert "resnet18" not in other.text and w["name"] not in other.text
    assert client.get(MINE).status_code == 401
    assert client.get(f"{MINE}/0", headers=a).status_code == 422  # bounded ids
    assert client.get(f"{MINE}/{2**31}", headers=a).status_code == 422

    assert client.delete(f"{MINE}/{w['id']}", headers=a).status_code == 204
    assert client.get(MINE, headers=a).json() == [] and user_objects(client) == []
    assert client.get(f"{MINE}/{w['id']}", headers=a).status_code == 404


def test_bad_files_are_refused_naming_the_field_and_leave_no_row_and_no_object(
    client: TestClient, make_user: MakeUser
) -> None:
    _, a = make_user()
    cases: list[tuple[dict[str, Any], str, str]] = [
        # (upload kwargs, field named, words in the message)
        ({"data": small_safetensors()[:-3]}, "file", "truncated"),
        ({"data": b"these are not weights at all"}, "file", "safetensors"),
        ({"data": torch_zip(pickle.dumps(_Evil(), protocol=2)), "name": "evil.pt"}, "file", "posix.system"),
        ({"data": b"PK\x03\x04 broken", "name": "x.pt"}, "file", "x.pt"),
        ({"data": small_safetensors(), "name": "notes.txt"}, "file", ".safetensors"),
        ({"data": b"", "name": "empty.safetensors"}, "file", "empty"),
        ({"data": small_safetensors(), "model": "resnet999"}, "model", "resnet999"),
        ({"data": small_safetensors(), "model": "yolo11n"}, "file", "Ultralytics weights are a .pt"),
        ({"data": small_safetensors(), "model": "google/vit-base-patch16-224"}, "config", "config.json"),
    ]
    for kwargs, field, words in cases:
        form = {"model": kwargs.pop("model")} if "model" in kwargs else {}
        r = upload(client, a, **kwargs, **form)
        assert r.status_code == 422, (kwargs.get("name"), r.text)
        assert field_of(r) == field, (field, r.text)
        assert words.lower() in r.text.lower(), (words, r.text)
    # a transformers config that is not one
    r = client.post(
        MINE,
        data={"model": "google/vit-base-patch16-224"},
        files={
            "file": ("model.safetensors", small_safetensors(), "application/octet-stream"),
            "config": ("config.json", b'{"no": "model_type"}', "application/json"),
        },
        headers=a,
    )
    assert r.status_code == 422 and "model_type" in r.text and "config" in r.text
    assert rows(client) == [] and user_objects(client) == []


def test_size_limit_and_storage_quota_are_413_and_uploads_count_toward_the_quota(db_url: str, tmp_path: Path) -> None:
    data = small_safetensors()
    settings = make_settings(db_url, tmp_path, user_weights_max_bytes=len(data) - 1)
    with TestClient(create_app(settings)) as c:
        c.post(f"{API}/auth/register", json={"email": "q@example.com", "password": "correct horse battery"})
        tok = c.post(f"{API}/auth/token", data={"username": "q@example.com", "password": "correct horse battery"})
        h = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        r = upload(c, h, data)
        assert r.status_code == 413 and field_of(r) == "file" and str(len(data) - 1) in r.text
        assert rows(c) == [] and user_objects(c) == []

    settings = make_settings(db_url, tmp_path, user_storage_quota_bytes=len(data) + 10)
    with TestClient(create_app(settings)) as c:
        tok = c.post(f"{API}/auth/token", data={"username": "q@example.com", "password": "correct horse battery"})
        h = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        assert upload(c, h, data).status_code == 201
        again = upload(c, h, data, name="second.safetensors")
        assert again.status_code == 413 and "quota" in again.text
        assert again.json()["used_bytes"] == len(data)  # the first upload counts
        # and a dataset upload sees the weights' bytes too
        r = c.post(f"{API}/datasets", json={"name": "d"}, headers=h)
        up = c.post(
            f"{API}/datasets/{r.json()['id']}/upload",
            files=[("files", (n, b, "image/png")) for n, b in classification_files(2).items()],
            headers=h,
        )
        assert up.status_code == 413 and up.json()["used_bytes"] == len(data)
        assert len(rows(c)) == 1 and len(user_objects(c)) == 1


# ----------------------------------------------------------------------------------- jobs


def create(client: TestClient, h: dict[str, str], **intent: Any) -> Any:
    body = {"dataset": "tiny", "epochs": 1, "image_size": 32, **intent}
    return client.post(f"{API}/jobs", json={"intent": body}, headers=h)


def test_a_job_starts_from_the_users_weights_instead_of_the_registry(client: TestClient, make_user: MakeUser) -> None:
    _, h = make_user()
    _, boss = make_user("boss@example.com")
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        weights_tools.set_admin(db, "boss@example.com")
    registry = client.post(
        f"{API}/weights",
        data={"model": "resnet18", "pretraining": "ImageNet-1k"},
        files={"file": ("r18.safetensors", small_safetensors(), "application/octet-stream")},
        headers=boss,
    )
    assert registry.status_code == 201, registry.text
    upload_dataset(client, h, "tiny", classification_files(12))
    mine = safetensors_bytes({"layer1.0.conv1.weight": ("F32", [1], b"\0\0\x80?")})
    w = upload(client, h, mine, name="finetuned-r18.safetensors").json()

    job = create(client, h, init_weights="mine")  # the model is the upload's
    assert job.status_code == 201, job.text
    j = job.json()
    assert j["model_name"] == "resnet18" and j["framework"] == "timm"
    assert j["pretrained"] == {
        "source": "user upload",
        "detail": "your weights finetuned-r18.safetensors",
        "pretraining": None,
        "planned": True,
        "download": None,
        "file": "finetuned-r18.safetensors",
        "sha256": hashlib.sha256(mine).hexdigest(),
        "user_weights_id": w["id"],
    }
    spec_path = client.app.state.supervisor.runtime.spec_path(j["id"])  # type: ignore[attr-defined]
    wait_for(lambda: spec_path.is_file(), timeout=30)
    plan = json.loads(spec_path.read_text())["pretrained"]
    assert plan["source"] == "user upload" and plan["detail"] == "your weights finetuned-r18.safetensors"
    assert plan["registry_key"].startswith("weights/user/") and plan["registry_key"].endswith(f"/{w['id']}/")
    assert plan["files"] == [
        {"name": "finetuned-r18.safetensors", "sha256": hashlib.sha256(mine).hexdigest(), "size": len(mine)}
    ]
    # the sentence of the confirmation (English and Korean)
    sha = hashlib.sha256(mine).hexdigest()[:12]
    assert weights_tools.describe_pretrained(j["pretrained"], "resnet18", "en") == (
        f"from your weights finetuned-r18.safetensors (sha {sha})"
    )
    assert weights_tools.describe_pretrained(j["pretrained"], "resnet18", "ko") == (
        f"내가 올린 가중치 finetuned-r18.safetensors 사용 (sha {sha})"
    )

    # by id, with the model named
    by_id = create(client, h, init_weights=w["id"], model_name="resnet18")
    assert by_id.status_code == 201 and by_id.json()["pretrained"]["user_weights_id"] == w["id"]


def test_requests_naming_weights_that_do_not_fit_are_refused_naming_init_weights(
    client: TestClient, make_user: MakeUser
) -> None:
    _, h = make_user()
    _, other = make_user()
    upload_dataset(client, h, "tiny", classification_files(12))
    none = create(client, h, init_weights="mine", model_name="resnet18")
    assert none.status_code == 422 and none.json()["location"]["field"] == "init_weights"
    assert "POST /api/v1/weights/mine" in none.text

    first = upload(client, h, small_safetensors(), name="a.safetensors").json()
    second = upload(client, h, small_safetensors(), name="b.safetensors").json()
    several = create(client, h, init_weights="mine")
    assert several.status_code == 422 and several.json()["location"]["field"] == "init_weights"
    assert {c["id"] for c in several.json()["choices"]} == {first["id"], second["id"]}
    assert "a.safetensors" in several.text and "b.safetensors" in several.text

    theirs = upload(client, other, small_safetensors(), name="theirs.safetensors").json()
    hidden = create(client, h, init_weights=theirs["id"])
    assert hidden.status_code == 404 and hidden.json()["location"]["field"] == "init_weights"
    assert "theirs.safetensors" not in hidden.text

    wrong = create(client, h, init_weights=first["id"], model_name="resnet34")
    assert wrong.status_code == 422 and wrong.json()["location"]["field"] == "init_weights"
    assert "resnet18" in wrong.text and "resnet34" in wrong.text

    both = create(client, h, init_weights=first["id"], init_from_job=1)
    assert both.status_code == 422 and both.json()["location"]["field"] == "init_weights"

    assert create(client, h, init_weights=0).status_code == 422
    assert create(client, h, init_weights=2**31).status_code == 422
    assert create(client, h, init_weights="yours").status_code == 422
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        assert db.scalar(select(Job.id)) is None  # nothing was queued


def test_trainer_report_keeps_the_file_and_sha256(session_factory: Any) -> None:
    from tests.event_helpers import make_job

    owner = None
    with session_factory() as db:
        from tools.db.models import User

        user = User(email="r@example.com", hashed_password="x")
        db.add(user)
        db.commit()
        owner = user.id
    job_id, _ = make_job(session_factory, owner, status="running")
    with session_factory() as db:
        job = db.get(Job, job_id)
        assert job is not None
        job.pretrained = {
            "source": "user upload",
            "detail": "your weights a.safetensors",
            "planned": True,
            "file": "a.safetensors",
            "sha256": "ab" * 32,
            "user_weights_id": 5,
        }
        weights_tools.record_trainer_report(
            db,
            job,
            {
                "source": "user upload",
                "detail": "your weights a.safetensors",
                "file": "a.safetensors",
                "sha256": "cd" * 32,
            },
        )
        assert job.pretrained == {
            "source": "user upload",
            "detail": "your weights a.safetensors",
            "pretraining": None,
            "planned": False,
            "file": "a.safetensors",
            "sha256": "cd" * 32,
            "user_weights_id": 5,
        }


def test_the_model_card_says_the_job_started_from_the_owners_weights() -> None:
    from tests.tools.test_downloads import _job
    from tools.downloads import _pretrained

    card = _pretrained(
        _job(
            pretrained={
                "source": "user upload",
                "detail": "your weights a.safetensors",
                "file": "a.safetensors",
                "sha256": "ab" * 32,
                "planned": False,
            }
        )
    )
    assert card.pretrained is True and card.recorded is True
    assert card.source == f"started from the owner's weights a.safetensors (sha256 {'ab' * 32})"


def test_transformers_uploads_keep_their_config_under_the_names_from_pretrained_reads(
    client: TestClient, make_user: MakeUser
) -> None:
    _, h = make_user()
    config = json.dumps({"model_type": "vit", "image_size": 32}).encode()
    r = client.post(
        MINE,
        data={"model": "google/vit-base-patch16-224"},
        files={
            "file": ("vit-mine.safetensors", small_safetensors(), "application/octet-stream"),
            "config": ("config.json", config, "application/json"),
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["framework"] == "transformers" and w["name"] == "vit-mine.safetensors"
    assert [f["name"] for f in w["files"]] == ["config.json", "model.safetensors"]
    assert w["size"] == len(small_safetensors()) and w["sha256"] == hashlib.sha256(small_safetensors()).hexdigest()
    assert len(user_objects(client)) == 2
    # a config for a framework that takes none is refused
    r = client.post(
        MINE,
        data={"model": "resnet18"},
        files={
            "file": ("r.safetensors", small_safetensors(), "application/octet-stream"),
            "config": ("config.json", config, "application/json"),
        },
        headers=h,
    )
    assert r.status_code == 422 and field_of(r) == "config"


def test_a_store_that_fails_half_way_leaves_no_row_and_no_object(
    client: TestClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_runtime.errors import StorageError

    _, h = make_user()
    internal = client.app.state.storage.internal  # type: ignore[attr-defined]
    real_put = internal.put_file

    def flaky_put(key: str, path: Any, **kw: Any) -> Any:
        if key.endswith("model.safetensors"):  # the second file: config.json is already stored
            raise StorageError("the store went away")
        return real_put(key, path, **kw)

    monkeypatch.setattr(internal, "put_file", flaky_put)
    r = client.post(
        MINE,
        data={"model": "google/vit-base-patch16-224"},
        files={
            "file": ("vit.safetensors", small_safetensors(), "application/octet-stream"),
            "config": ("config.json", b'{"model_type": "vit"}', "application/json"),
        },
        headers=h,
    )
    assert r.status_code == 502, r.text
    assert rows(client) == [] and user_objects(client) == []
