"""Request bodies are not read before authentication, and are bounded.

Before the fix, an anonymous 200 MiB POST to `/api/v1/jobs/{id}/inference` or
`/api/v1/test-runs/upload` was received (spooled to disk) in full, and only then refused with 401:
FastAPI parses a form or JSON body before the route's dependencies run. Now every `/api/v1` route
that needs a user answers 401 from the request's headers, before reading its body, and closes the
connection. These tests talk raw HTTP/1.1 over a socket to a real server: they declare 200 MiB,
send only the first 64 KiB, and must get the 401 (and the server's end of the connection) while
the rest of the body was never sent. Then the body limits: 413 from `Content-Length`, and from the
bytes counted while a chunked body streams.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.live_server import API, LiveServer, register
from web.config import Settings

DECLARED = 200 * 1024 * 1024
SENT = 64 * 1024
BOUNDARY = "b0undary"


def _multipart_head(field: str, filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


# (path, content type, the start of a body that would go on for 200 MiB)
UPLOAD_ROUTES = {
    "inference": (
        f"{API}/jobs/1/inference",
        f"multipart/form-data; boundary={BOUNDARY}",
        _multipart_head("file", "a.png"),
    ),
    "test_run_upload": (
        f"{API}/test-runs/upload",
        f"multipart/form-data; boundary={BOUNDARY}",
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="job_id"\r\n\r\n1\r\n'.encode()
        + _multipart_head("file", "set.zip"),
    ),
    "dataset_upload": (
        f"{API}/datasets/0123456789abcdef0123456789abcdef/upload",
        f"multipart/form-data; boundary={BOUNDARY}",
        _multipart_head("files", "d/images/a.png"),
    ),
    "user_weights": (
        f"{API}/weights/mine",
        f"multipart/form-data; boundary={BOUNDARY}",
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nresnet18\r\n'.encode()
        + _multipart_head("file", "w.safetensors"),
    ),
    "chat_image": (f"{API}/chat", "application/json", b'{"message": "test it on this image", "image_base64": "'),
    "create_project": (f"{API}/projects", "application/json", b'{"name": "p", "description": "'),
}


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    from web.main import create_app

    with LiveServer(create_app(make_settings(db_url, tmp_path))) as live:
        yield live


def _exchange(server: LiveServer, head: list[str], body: bytes, timeout: float = 20.0) -> tuple[bytes, bool]:
    """Send `head` + `body` (and nothing more); return (what the server answered, whether it then
    closed the connection). On a server that waits for the rest of the body, the answer is b""."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    answer = b""
    closed = False
    try:
        sock.sendall(("\r\n".join([*head, "Host: 127.0.0.1", ""]) + "\r\n").encode() + body)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            answer += chunk
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    except TimeoutError:
        pass  # the server is still waiting for the body
    finally:
        sock.close()
    return answer, closed


def _post_head(path: str, content_type: str, length: int | None, auth: str | None = None) -> list[str]:
    head = [f"POST {path} HTTP/1.1", f"Content-Type: {content_type}"]
    head.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if auth is not None:
        head.append(f"Authorization: {auth}")
    return head


@pytest.mark.parametrize("route", sorted(UPLOAD_ROUTES))
@pytest.mark.parametrize("auth", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_anonymous_large_post_is_refused_before_its_body(server: LiveServer, route: str, auth: str | None) -> None:
    path, content_type, start = UPLOAD_ROUTES[route]
    body = start + b"x" * (SENT - len(start))
    answer, closed = _exchange(server, _post_head(path, content_type, DECLARED, auth), body)
    assert answer.startswith(b"HTTP/1.1 401 "), (
        f"no 401 after {len(body)} of {DECLARED} declared bytes: {answer[:200]!r}"
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert b"www-authenticate: Bearer" in head.lower().replace(b"bearer", b"Bearer")
    assert b'"error":"AuthenticationError"' in payload
    assert closed, "the server kept the connection open to receive the rest of the body"


def test_anonymous_chunked_post_is_refused_before_its_body(server: LiveServer) -> None:
    path, content_type, start = UPLOAD_ROUTES["inference"]
    chunk = start + b"x" * (SENT - len(start))
    answer, closed = _exchange(server, _post_head(path, content_type, None), f"{len(chunk):x}\r\n".encode() + chunk)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert closed


def test_an_over_limit_content_length_is_413_before_the_body(db_url: str, tmp_path: Path) -> None:
    from web.main import create_app

    settings = make_settings(db_url, tmp_path, max_request_body_bytes=1024 * 1024)
    with LiveServer(create_app(settings)) as live, live.client() as client:
        auth = register(client, "big@example.com")["Authorization"]
        r = client.post(f"{API}/datasets", json={"name": "big"}, headers={"Authorization": auth})
        assert r.status_code == 201, r.text
        path = f"{API}/datasets/{r.json()['id']}/upload"
        head = _post_head(path, f"multipart/form-data; boundary={BOUNDARY}", DECLARED, auth)
        answer, closed = _exchange(live, head, _multipart_head("files", "d/a.png"))
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
        assert b'"error":"PayloadTooLargeError"' in answer and b'"limit_bytes":1048576' in answer
        assert closed
        # within the limit the same route still works
        files = [("files", ("d/images/a.png", b"\x89PNG" + b"0" * 100, "image/png"))]
        assert client.post(path, files=files, headers={"Authorization": auth}).status_code != 413


@pytest.fixture
def small_limits(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path, max_request_body_bytes=1024 * 1024, max_unauthenticated_body_bytes=64 * 1024)


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


@pytest.mark.parametrize("route", ["dataset_upload", "inference", "test_run_upload", "chat_image"])
def test_an_authenticated_chunked_body_over_the_limit_is_413(small_limits: Settings, route: str) -> None:
    from fastapi.testclient import TestClient

    from web.main import create_app

    with TestClient(create_app(small_limits)) as client:
        email = f"chunked-{route}@example.com"
        assert client.post(f"{API}/auth/register", json={"email": email, "password": "correct horse battery staple"})
        tok = client.post(f"{API}/auth/token", data={"username": email, "password": "correct horse battery staple"})
        headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        path, content_type, start = UPLOAD_ROUTES[route]
        if route == "dataset_upload":
            created = client.post(f"{API}/datasets", json={"name": "chunked"}, headers=headers)
            path = f"{API}/datasets/{created.json()['id']}/upload"

        def body() -> Iterator[bytes]:
            yield start
            yield from _chunks(2 * 1024 * 1024)

        r = client.post(path, content=body(), headers={**headers, "Content-Type": content_type})
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "PayloadTooLargeError" and r.json()["limit_bytes"] == 1024 * 1024


def test_unauthenticated_bodies_have_the_smaller_limit(small_limits: Settings) -> None:
    from fastapi.testclient import TestClient

    from web.main import create_app

    with TestClient(create_app(small_limits)) as client:
        big = {"text": "x" * (128 * 1024)}
        r = client.post(f"{API}/agent/parse", json=big)
        assert r.status_code == 413, r.text
        assert r.json()["limit_bytes"] == 64 * 1024
        chunked = client.post(
            f"{API}/auth/register", content=_chunks(128 * 1024), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413, chunked.text
        # small anonymous bodies on the anonymous routes are read as before
        assert client.post(f"{API}/agent/parse", json={"text": "train yolo11n on digits"}).status_code == 200
