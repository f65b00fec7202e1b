"""Plays the dialogue test set (`tests/agent/data/dialogues.yaml`) against a chat API.

The runner knows nothing of how the server was configured (rules or an LLM, a TestClient or a
live server): it gets an HTTP client (anything with ``get`` / ``post`` taking ``json=``,
``headers=``, ``params=`` and returning a response with ``status_code`` and ``json()``, such as
``fastapi.testclient.TestClient`` or ``httpx.Client``) and the signed-in user's headers.

    seed_datasets(client, headers)               the datasets the scenarios name (private, the user's)
    load_scenarios() -> list[dict]               the scenarios, as stored
    play(client, headers, scenario) -> list[str] one scenario, in a new chat session; the mismatches
    play_all(client, headers) -> {id: [...]}     every scenario (the jobs of one add to the user's)

A scenario is ``{"id", "lang", "covers": [...], "turns": [{"say": str, "expect": {...}}]}``.
What a turn may expect (each key optional):

    state, pending       the ChatTurn's state and pending slot (null for none)
    language             the reply's language ("ko" / "en"); the reply text is also checked to read
                         in it (`language_problems`): Korean without two-form particles ("(으)로",
                         "을(를)") or an English clause outside `code`; English without Hangul or
                         "1 epochs"
    launched             whether this turn launched a job; every turn also checks that a job was
                         created exactly when the turn says it launched one
    job                  fields of that job from GET /jobs/{id} (model_name, dataset_name, epochs,
                         task_type, framework, ...)
    intent               slots of the ChatTurn's intent
    summary              keys of the confirmation summary ("dataset.name" reads a nested key)
    suggestions_include  quick replies that must be offered
    contains / not_contains  substrings of the reply
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.live_server import _png, classification_files, detection_files, upload_dataset

API = "/api/v1"
DATA = Path(__file__).parent / "data" / "dialogues.yaml"

# ------------------------------------------------------------------------------------- data


def _named_classes(files: dict[str, bytes], names: tuple[str, ...]) -> dict[str, bytes]:
    doc = json.loads(files["annotations.json"])
    doc["categories"] = [{"id": i, "name": n} for i, n in enumerate(names, 1)]
    files["annotations.json"] = json.dumps(doc).encode()
    return files


def segmentation_files(n: int = 6, name: str = "tiny-seg", size: int = 32) -> dict[str, bytes]:
    """A DICE folder with one polygon per image (segmentation; detection after conversion)."""
    files: dict[str, bytes] = {}
    images, annotations = [], []
    for i in range(n):
        rel = f"{i:03d}.png"
        files[f"images/{rel}"] = _png(100 + 10 * (i % 3), i, size)
        images.append({"id": i + 1, "file_name": rel, "width": size, "height": size})
        poly = [4.0, 4.0, 20.0, 4.0, 20.0, 18.0, 4.0, 18.0]
        annotations.append(
            {"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "segmentation": [poly], "area": 224.0}
        )
    doc = {
        "format_version": "1.0",
        "dataset": {"name": name, "description": ""},
        "categories": [{"id": 1, "name": "leaf"}, {"id": 2, "name": "stem"}],
        "images": images,
        "annotations": annotations,
    }
    files["annotations.json"] = json.dumps(doc).encode()
    return files


def seed_datasets(client: Any, headers: dict[str, str]) -> None:
    """The user's datasets the scenarios name: pets (cat/dog) and fruit (apple/banana) with image
    labels, parcels with boxes, leaves with polygons."""
    upload_dataset(client, headers, "pets", _named_classes(classification_files(12, "pets"), ("cat", "dog")))
    upload_dataset(client, headers, "fruit", _named_classes(classification_files(12, "fruit"), ("apple", "banana")))
    upload_dataset(client, headers, "parcels", detection_files(6, "parcels"))
    upload_dataset(client, headers, "leaves", segmentation_files(6, "leaves"))


def load_scenarios(path: Path = DATA) -> list[dict[str, Any]]:
    """The scenarios stored in `path` (a YAML list)."""
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(items, list)
    return items


# ---------------------------------------------------------------------------------- language

_MARKERS = ("(으)로", "을(를)", "를(을)", "이(가)", "가(이)", "은(는)", "는(은)", "와(과)", "과(와)", "(이)")
_CODE = re.compile(r"`[^`]*`|https?://\S+|(?:GET|POST|PUT|DELETE) /\S+")
_EN_WORD = re.compile(r"^[A-Za-z]+(?:'[a-z]+)?$")
_HANGUL = re.compile(r"[가-힣]")
_ONE_PLURAL = re.compile(r"(?<![\w.,-])1 (?:epochs|images|classes|steps|labels|jobs|files|boxes)\b")
ENGLISH_RUN = 3
"""A Korean reply may name things in Latin letters (models, datasets, "PyTorch"), but a run of this
many plain English words outside `code` is an English clause."""


def english_runs(text: str) -> list[str]:
    """Runs of `ENGLISH_RUN` or more plain English words in `text` (code and links left out; a
    parenthesis or the end of a sentence ends a run)."""
    runs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if len(current) >= ENGLISH_RUN:
            runs.append(" ".join(current))
        current.clear()

    for token in _CODE.sub(" | ", text).split():
        if token[:1] in "([":
            flush()
        word = token.strip(".,;:!?()[]{}\"'“”")
        if _EN_WORD.match(word) and len(word) > 1:
            current.append(word)
        else:
            flush()
        if token[-1:] in ".;:!?)]":
            flush()
    flush()
    return runs


def language_problems(reply: str, lang: str) -> list[str]:
    """How `reply` fails to read in `lang` (empty when it reads right)."""
    problems: list[str] = []
    if lang == "ko":
        if not _HANGUL.search(reply):
            problems.append("no Korean in the reply")
        problems += [f"unresolved particle {m!r}" for m in _MARKERS if m in reply]
        problems += [f"English clause {run!r}" for run in english_runs(reply)]
    else:
        outside = re.sub(r"\"[^\"]*\"|'[^']*'", " ", reply)
        if _HANGUL.search(outside):
            problems.append("Hangul in an English reply")
        problems += [f"wrong plural {m.group(0)!r}" for m in _ONE_PLURAL.finditer(reply)]
    return problems


# -------------------------------------------------------------------------------------- play


def _job_total(client: Any, headers: dict[str, str]) -> int:
    r = client.get(f"{API}/jobs", params={"limit": 1}, headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _check_fields(what: str, actual: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    if actual is None:
        return [f"{what}: none in the reply, expected {expected}"]
    out = []
    for key, want in expected.items():
        got = _dig(actual, key)
        if got != want:
            out.append(f"{what}.{key}: {got!r} != {want!r}")
    return out


def check_turn(
    client: Any, headers: dict[str, str], body: dict[str, Any], expect: dict[str, Any], new_jobs: int
) -> list[str]:
    """The mismatches of one turn's answer `body` against `expect` (`new_jobs`: jobs created by it)."""
    out: list[str] = []
    reply = str(body.get("reply") or "")
    for key in ("state", "pending", "language", "launched"):
        if key in expect and body.get(key) != expect[key]:
            out.append(f"{key}: {body.get(key)!r} != {expect[key]!r}")
    if new_jobs != (1 if body.get("launched") else 0):
        out.append(f"{new_jobs} job(s) created, reply says launched={body.get('launched')}")
    if "language" in expect:
        out += language_problems(reply, str(expect["language"]))
    if "intent" in expect:
        out += _check_fields("intent", body.get("intent"), dict(expect["intent"]))
    if "summary" in expect:
        out += _check_fields("summary", body.get("summary"), dict(expect["summary"]))
    if "job" in expect:
        job_id = body.get("job_id")
        if job_id is None:
            out.append("job: the turn names no job")
        else:
            r = client.get(f"{API}/jobs/{job_id}", headers=headers)
            out += _check_fields("job", r.json() if r.status_code == 200 else None, dict(expect["job"]))
    for want in expect.get("suggestions_include") or []:
        if want not in (body.get("suggestions") or []):
            out.append(f"suggestion {want!r} missing from {body.get('suggestions')}")
    out += [f"reply lacks {s!r}" for s in expect.get("contains") or [] if s not in reply]
    out += [f"reply has {s!r}" for s in expect.get("not_contains") or [] if s in reply]
    return out


def play(client: Any, headers: dict[str, str], scenario: dict[str, Any]) -> list[str]:
    """Play `scenario` in a new chat session as the user of `headers`; every mismatch as
    "turn N (message): what differs" (empty when the dialogue went as written)."""
    mismatches: list[str] = []
    session_id: str | None = None
    jobs_before = _job_total(client, headers)
    for n, turn in enumerate(scenario["turns"], 1):
        message = str(turn["say"])
        payload: dict[str, Any] = {"message": message}
        if session_id is not None:
            payload["session_id"] = session_id
        r = client.post(f"{API}/chat", json=payload, headers=headers)
        if r.status_code != 200:
            mismatches.append(f"turn {n} ({message!r}): HTTP {r.status_code} {r.text[:200]}")
            break
        body = r.json()
        session_id = body["session_id"]
        jobs_now = _job_total(client, headers)
        problems = check_turn(client, headers, body, dict(turn.get("expect") or {}), jobs_now - jobs_before)
        jobs_before = jobs_now
        mismatches += [f"turn {n} ({message!r}): {p}" for p in problems]
    return mismatches


def play_all(
    client: Any, headers: dict[str, str], scenarios: list[dict[str, Any]] | None = None
) -> dict[str, list[str]]:
    """Every scenario (default: the stored set) played in turn; scenario id -> its mismatches."""
    return {s["id"]: play(client, headers, s) for s in (scenarios if scenarios is not None else load_scenarios())}
