"""Helpers for the chat/dialogue tests: small labelled datasets with named classes, a ToolContext
for a user of a running app, and the fake-trainer settings (jobs launch but never train)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import make_settings
from tests.live_server import classification_files, detection_files, upload_dataset, write_fake_python
from tools.context import ToolContext
from tools.db.models import User
from web.config import Settings
from web.deps import link_signer


def named_classification(n: int, name: str, classes: tuple[str, str]) -> dict[str, bytes]:
    """`classification_files` with the two classes renamed (e.g. cat/dog)."""
    files = classification_files(n, name)
    doc = json.loads(files["annotations.json"])
    doc["categories"] = [{"id": 1, "name": classes[0]}, {"id": 2, "name": classes[1]}]
    files["annotations.json"] = json.dumps(doc).encode()
    return files


def fake_trainer_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    fake = write_fake_python(tmp_path / "fake-python", mode="sleep", seconds=120)
    values: dict[str, Any] = {
        "trainer_python_timm": fake,
        "trainer_python_ultralytics": fake,
        "trainer_python_transformers": fake,
        "max_concurrent_jobs": 1,
        "stop_grace_period_s": 5,
    }
    values.update(overrides)
    return make_settings(db_url, tmp_path, **values)


def seed_datasets(client: Any, headers: dict[str, str]) -> None:
    """pets (cat/dog, classification), fruit (apple/banana, classification), parcels (detection)."""
    upload_dataset(client, headers, "pets", named_classification(12, "pets", ("cat", "dog")))
    upload_dataset(client, headers, "fruit", named_classification(12, "fruit", ("apple", "banana")))
    upload_dataset(client, headers, "parcels", detection_files(6, "parcels"))


@contextmanager
def tool_context(app: Any, user_id: int) -> Iterator[ToolContext]:
    """A ToolContext for `user_id` on the app's database and storage (closed afterwards)."""
    state = app.state
    with state.session_factory() as db:
        user = db.get(User, user_id)
        assert user is not None
        yield ToolContext(
            db=db,
            user=user,
            storage=state.storage,
            work_dir=state.work_dir,
            links=link_signer(state),
            services=state.services,
        )
