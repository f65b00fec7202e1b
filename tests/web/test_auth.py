"""Register, sign in, tokens, /me — on every configured database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import DEFAULT_PASSWORD, MakeUser
from tests.web.conftest import CraftToken
from tools import auth as auth_tools
from tools.db.models import User

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"


def test_register_returns_user_and_lowercases_email(client: TestClient) -> None:
    resp = client.post(REGISTER, json={"email": "  Alice@Example.COM ", "password": DEFAULT_PASSWORD})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"id", "email", "created_at"}
    assert body["email"] == "alice@example.com"
    assert isinstance(body["id"], int)
    assert body["created_at"].endswith(("+00:00", "Z"))


def test_password_is_stored_hashed_with_argon2(app: FastAPI, client: TestClient) -> None:
    client.post(REGISTER, json={"email": "hash@example.com", "password": DEFAULT_PASSWORD})
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        user = auth_tools.get_user_by_email(db, "hash@example.com")
        assert user is not None
        assert user.hashed_password.startswith("$argon2id$")
        assert DEFAULT_PASSWORD not in user.hashed_password


def test_register_duplicate_is_409_case_insensitive(client: TestClient) -> None:
    assert client.post(REGISTER, json={"email": "bob@example.com", "password": DEFAULT_PASSWORD}).status_code == 201
    resp = client.post(REGISTER, json={"email": "BOB@example.com", "password": "another password"})
    assert resp.status_code == 409
    assert resp.json()["error"] == "ConflictError"


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "@example.com", "x y@example.com", ""])
def test_register_bad_email_is_422(client: TestClient, email: str) -> None:
    resp = client.post(REGISTER, json={"email": email, "password": DEFAULT_PASSWORD})
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "InvalidInputError"
    assert body["location"]["field"] == "email"


def test_register_short_password_is_422(client: TestClient) -> None:
    resp = client.post(REGISTER, json={"email": "short@example.com", "password": "1234567"})
    assert resp.status_code == 422
    assert resp.json()["location"]["field"] == "password"
    assert "8" in resp.json()["detail"]


def test_register_missing_field_keeps_fastapi_shape(client: TestClient) -> None:
    resp = client.post(REGISTER, json={"email": "x@example.com"})
    assert resp.status_code == 422
    assert isinstance(resp.json()["detail"], list)


def test_login_ok_and_me(client: TestClient) -> None:
    client.post(REGISTER, json={"email": "carol@example.com", "password": DEFAULT_PASSWORD})
    resp = client.post(TOKEN, data={"username": "Carol@Example.com", "password": DEFAULT_PASSWORD})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 24 * 3600
    me = client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == "carol@example.com"


def test_wrong_password_and_unknown_email_look_the_same(client: TestClient) -> None:
    client.post(REGISTER, json={"email": "dave@example.com", "password": DEFAULT_PASSWORD})
    wrong = client.post(TOKEN, data={"username": "dave@example.com", "password": "wrong password"})
    unknown = client.post(TOKEN, data={"username": "nobody@example.com", "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_system_user_cannot_log_in(app: FastAPI, client: TestClient) -> None:
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        system = auth_tools.get_user_by_email(db, auth_tools.SYSTEM_USER_EMAIL)
        assert system is not None and system.is_system
    for password in ("", auth_tools.UNUSABLE_PASSWORD, DEFAULT_PASSWORD):
        resp = client.post(TOKEN, data={"username": auth_tools.SYSTEM_USER_EMAIL, "password": password})
        assert resp.status_code in (401, 422)
    # Registering the system address is refused too.
    resp = client.post(REGISTER, json={"email": auth_tools.SYSTEM_USER_EMAIL, "password": DEFAULT_PASSWORD})
    assert resp.status_code == 409


def test_system_user_token_is_refused(app: FastAPI, client: TestClient, craft_token: CraftToken) -> None:
    system_id = app.state.system_user_id
    resp = client.get(ME, headers={"Authorization": f"Bearer {craft_token(system_id)}"})
    assert resp.status_code == 401


def test_missing_token_is_401_with_www_authenticate(client: TestClient) -> None:
    resp = client.get(ME)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["error"] == "AuthenticationError"


def test_expired_token_is_401(client: TestClient, make_user: MakeUser, craft_token: CraftToken) -> None:
    user, _ = make_user()
    token = craft_token(user["id"], expires_in=timedelta(seconds=-10))
    resp = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert "expired" in resp.json()["detail"].lower()


def test_tampered_token_is_401(client: TestClient, make_user: MakeUser, craft_token: CraftToken) -> None:
    user, headers = make_user()
    token = headers["Authorization"].split()[1]
    header, _payload, signature = token.split(".")
    forged_payload = craft_token(user["id"] + 1).split(".")[1]
    for bad in (
        f"{header}.{forged_payload}.{signature}",  # payload swapped, old signature
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),  # signature changed
        craft_token(user["id"], secret="some-other-secret-that-is-long-enough-for-hs256"),
        craft_token(user["id"], type="refresh"),
        craft_token("not-a-number"),
        "garbage",
    ):
        resp = client.get(ME, headers={"Authorization": f"Bearer {bad}"})
        assert resp.status_code == 401, bad


def test_token_of_deleted_or_inactive_user_is_401(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    user, headers = make_user()
    assert client.get(ME, headers=headers).status_code == 200
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        row = db.get(User, user["id"])
        assert row is not None
        row.is_active = False
        db.commit()
    assert client.get(ME, headers=headers).status_code == 401
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        row = db.get(User, user["id"])
        db.delete(row)
        db.commit()
    assert client.get(ME, headers=headers).status_code == 401


def test_inactive_user_cannot_log_in(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    user, _ = make_user("eve@example.com")
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        row = db.get(User, user["id"])
        assert row is not None
        row.is_active = False
        db.commit()
    resp = client.post(TOKEN, data={"username": "eve@example.com", "password": DEFAULT_PASSWORD})
    assert resp.status_code == 401


def test_hash_is_upgraded_when_parameters_change(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    from argon2 import PasswordHasher

    user, _ = make_user("frank@example.com")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(DEFAULT_PASSWORD)
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        row = db.get(User, user["id"])
        assert row is not None
        row.hashed_password = weak
        db.commit()
    resp = client.post(TOKEN, data={"username": "frank@example.com", "password": DEFAULT_PASSWORD})
    assert resp.status_code == 200
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        row = db.get(User, user["id"])
        assert row is not None
        assert row.hashed_password != weak
        assert not auth_tools.password_needs_rehash(row.hashed_password)


def test_authenticate_raw_token_for_websockets(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    from tools.errors import AuthenticationError
    from web.deps import authenticate_raw_token

    user, headers = make_user()
    token = headers["Authorization"].split()[1]
    state = app.state
    assert authenticate_raw_token(state, token).id == user["id"]
    for bad in (None, "", "garbage"):
        with pytest.raises(AuthenticationError):
            authenticate_raw_token(state, bad)


def test_secret_is_generated_once_and_kept(tmp_path: Path, db_url: str) -> None:
    from tests.conftest import make_settings
    from web.main import create_app

    settings = make_settings(db_url, tmp_path, secret_key=None)
    with TestClient(create_app(settings)) as c:
        c.post(REGISTER, json={"email": "gina@example.com", "password": DEFAULT_PASSWORD})
        token = c.post(TOKEN, data={"username": "gina@example.com", "password": DEFAULT_PASSWORD}).json()
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
    # A restarted server still accepts the token.
    with TestClient(create_app(make_settings(db_url, tmp_path, secret_key=None))) as c:
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert c.get(ME, headers=headers).status_code == 200


def test_a_verified_token_is_still_refused_once_it_expires(
    client: TestClient, make_user: MakeUser, craft_token: CraftToken
) -> None:
    """Verified tokens are remembered (tools.auth), but only until their own expiry."""
    import time

    user, _ = make_user()
    token = craft_token(user["id"], expires_in=timedelta(seconds=2))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200  # remembered
    time.sleep(2.1)
    r = client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401 and "expired" in r.json()["detail"].lower()
