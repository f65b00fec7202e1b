"""The upload + download path with the storage on two real S3 HTTP endpoints (moto servers):
objects land in the external bucket only, reads stream back, deletes clean up."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import MakeUser, make_settings
from tests.dataset_builders import API, labeled_files, parts, zip_bytes
from tests.s3_fixtures import MotoS3, moto_external, moto_internal, s3_env  # noqa: F401
from web.config import Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path, s3_env: dict[str, str]) -> Settings:  # noqa: F811
    return make_settings(db_url, tmp_path, **{k.lower(): v for k, v in s3_env.items()})


def test_upload_download_delete_on_s3(
    client: TestClient,
    make_user: MakeUser,
    settings: Settings,
    moto_external: MotoS3,  # noqa: F811
    moto_internal: MotoS3,  # noqa: F811
    tmp_path: Path,
) -> None:
    h = make_user()[1]
    bucket = settings.external_bucket_datasets
    did = client.post(API, json={"name": "s3"}, headers=h).json()["id"]
    files = labeled_files(3, top="mydata", sub="x")
    r = client.post(f"{API}/{did}/upload", files=parts(files), headers=h)
    assert r.status_code == 200, r.text
    keys = moto_external.keys(bucket, f"datasets/{did}/")
    assert sorted(keys) == sorted(
        [f"datasets/{did}/annotations.json"] + [f"datasets/{did}/images/x/{i}.png" for i in (1, 2, 3)]
    )
    assert moto_internal.keys(settings.internal_bucket_checkpoints) == []

    items = client.get(f"{API}/{did}/images", headers=h).json()["items"]
    r = client.get(f"{API}/{did}/images/{items[0]['id']}/file", headers=h)
    assert r.status_code == 200 and r.content == files["mydata/images/x/1.png"]
    r = client.get(f"{API}/{did}/images/{items[0]['id']}/thumbnail", params={"size": 64}, headers=h)
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).format == "JPEG"
    assert f"datasets/{did}/thumbnails/64/{items[0]['id']}.jpg" in moto_external.keys(bucket, f"datasets/{did}/")
    assert client.get(f"{API}/{did}/annotations", headers=h).content == files["mydata/annotations.json"]

    # the trainer's path: download the dataset folder from the external store
    app: Any = client.app
    dest = app.state.storage.download_dataset(did, tmp_path / "dl")
    assert (dest / "annotations.json").read_bytes() == files["mydata/annotations.json"]
    assert (dest / "images" / "x" / "2.png").read_bytes() == files["mydata/images/x/2.png"]

    snap = client.post(f"{API}/{did}/snapshots", headers=h).json()
    assert f"datasets/{did}/snapshots/{snap['id']}/annotations.json" in moto_external.keys(bucket)

    r = client.delete(f"{API}/{did}", headers=h)
    assert r.status_code == 200
    assert moto_external.keys(bucket, f"datasets/{did}/") == []


def test_zip_upload_and_rejected_upload_on_s3(
    client: TestClient,
    make_user: MakeUser,
    settings: Settings,
    moto_external: MotoS3,  # noqa: F811
) -> None:
    h = make_user()[1]
    bucket = settings.external_bucket_datasets
    did = client.post(API, json={"name": "s3zip"}, headers=h).json()["id"]
    bad = labeled_files(2, top="")
    bad["images/a/2.png"] = b"not a png"
    r = client.post(f"{API}/{did}/upload", files={"archive": ("d.zip", zip_bytes(bad))}, headers=h)
    assert r.status_code == 422 and "images/a/2.png" in r.json()["detail"]
    assert moto_external.keys(bucket, f"datasets/{did}/") == []
    r = client.post(f"{API}/{did}/upload", files={"archive": ("d.zip", zip_bytes(labeled_files(2, top="")))}, headers=h)
    assert r.status_code == 200, r.text
    assert len(moto_external.keys(bucket, f"datasets/{did}/")) == 3
