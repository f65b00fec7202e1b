"""Sign-in throttling, bounded password hashing,
and a 409 registration that costs what a new one costs.

Throttle: N wrong passwords -> 429 with Retry-After; the right password works once the lock is
over (injected clock) and resets the account; a client is limited across accounts; Redis shares
the counters between replicas. Hashing: the number of argon2 computations running at once is
counted by wrapping the hasher (never by timing); a sign-in that cannot get a slot gets 503.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import DEFAULT_PASSWORD, make_settings
from tools import auth as auth_tools
from tools.errors import AuthenticationError, ServiceBusyError, TooManyRequestsError
from tools.throttle import LoginThrottle, MemoryThrottleStore, RedisThrottleStore, ThrottlePolicy, decide
from web.main import create_app
from web.routes.auth import login_throttle

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
WRONG = "definitely not the password"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@example.com"


def _register(client: TestClient, email: str, password: str = DEFAULT_PASSWORD) -> None:
    resp = client.post(REGISTER, json={"email": email, "password": password})
    assert resp.status_code == 201, resp.text


def _login(client: TestClient, email: str, password: str) -> Any:
    return client.post(TOKEN, data={"username": email, "password": password})


@pytest.fixture
def throttled(db_url: str, tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient, FakeClock]]:
    """An app with small limits (3 per account, 6 per client, 60 s first lock) and a fake clock."""
    settings = make_settings(
        db_url,
        tmp_path,
        login_max_failures_per_account=3,
        login_max_failures_per_client=6,
        login_lockout_base_s=60,
        login_lockout_max_s=600,
        login_failure_window_s=900,
    )
    app = create_app(settings)
    clock = FakeClock()
    with TestClient(app) as client:
        login_throttle(app.state).clock = clock
        yield app, client, clock


def test_wrong_passwords_get_429_with_retry_after(throttled: tuple[FastAPI, TestClient, FakeClock]) -> None:
    _app, client, _clock = throttled
    email = _email()
    _register(client, email)
    assert [_login(client, email, WRONG).status_code for _ in range(3)] == [401, 401, 401]
    resp = _login(client, email, WRONG)
    assert resp.status_code == 429, resp.text
    assert int(resp.headers["retry-after"]) == 60
    assert resp.json()["error"] == "TooManyRequestsError"
    # While locked the right password is refused too (it is not even checked).
    locked = _login(client, email, DEFAULT_PASSWORD)
    assert locked.status_code == 429 and 1 <= int(locked.headers["retry-after"]) <= 60


def test_right_password_works_after_the_lock_and_resets_the_account(
    throttled: tuple[FastAPI, TestClient, FakeClock],
) -> None:
    _app, client, clock = throttled
    email = _email()
    _register(client, email)
    for _ in range(3):
        assert _login(client, email, WRONG).status_code == 401
    assert _login(client, email, DEFAULT_PASSWORD).status_code == 429
    clock.now += 59
    assert int(_login(client, email, DEFAULT_PASSWORD).headers["retry-after"]) == 1
    clock.now += 2  # the 60 s lock is over
    assert _login(client, email, DEFAULT_PASSWORD).status_code == 200
    # The success reset the account: three more wrong passwords are 401 again, not 429.
    assert [_login(client, email, WRONG).status_code for _ in range(3)] == [401, 401, 401]
    assert _login(client, email, WRONG).status_code == 429


def test_lock_doubles_with_each_failure_after_it(throttled: tuple[FastAPI, TestClient, FakeClock]) -> None:
    _app, client, clock = throttled
    email = _email()
    _register(client, email)
    for _ in range(3):
        _login(client, email, WRONG)
    clock.now += 61
    assert _login(client, email, WRONG).status_code == 401  # one try after the lock...
    resp = _login(client, email, WRONG)
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) == 120  # ...doubles it


def test_a_success_before_the_limit_resets_the_account(throttled: tuple[FastAPI, TestClient, FakeClock]) -> None:
    _app, client, _clock = throttled
    email = _email()
    _register(client, email)
    for _ in range(2):
        assert _login(client, email, WRONG).status_code == 401
    assert _login(client, email, DEFAULT_PASSWORD).status_code == 200
    assert [_login(client, email, WRONG).status_code for _ in range(3)] == [401, 401, 401]


def test_unknown_emails_are_throttled_like_known_ones(throttled: tuple[FastAPI, TestClient, FakeClock]) -> None:
    _app, client, _clock = throttled
    email = _email()  # never registered: the answers must not tell
    assert [_login(client, email, WRONG).status_code for _ in range(4)] == [401, 401, 401, 429]


def test_per_client_limit_spans_accounts(throttled: tuple[FastAPI, TestClient, FakeClock]) -> None:
    app, client, clock = throttled
    victim = _email()
    _register(client, victim)
    # 6 failures from one address, two per account (below the account limit of 3).
    for _ in range(3):
        email = _email()
        assert [_login(client, email, WRONG).status_code for _ in range(2)] == [401, 401]
    resp = _login(client, _email(), WRONG)
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) == 60
    assert _login(client, victim, DEFAULT_PASSWORD).status_code == 429  # this address is locked
    # Another address signs in to the same account at once.
    other = TestClient(app, client=("203.0.113.7", 40000))
    assert _login(other, victim, DEFAULT_PASSWORD).status_code == 200
    # A success does not wash the client's own counter (its own account cannot reset it).
    clock.now += 61
    assert _login(client, victim, DEFAULT_PASSWORD).status_code == 200
    assert _login(client, _email(), WRONG).status_code == 401
    assert _login(client, _email(), WRONG).status_code == 429


def test_register_conflicts_count_against_the_client(throttled: tuple[FastAPI, TestClient, FakeClock]) -> None:
    _app, client, _clock = throttled
    email = _email()
    _register(client, email)
    codes = [client.post(REGISTER, json={"email": email, "password": DEFAULT_PASSWORD}).status_code for _ in range(7)]
    assert codes == [409] * 6 + [429]


# --- the throttle on its own ----------------------------------------------------------------------

POLICY = ThrottlePolicy(max_failures=2, window_s=100, lockout_base_s=10, lockout_max_s=25)


def test_decide_backs_off_up_to_the_cap_and_forgets_after_the_window() -> None:
    assert [POLICY.lockout_s(n) for n in range(6)] == [0, 0, 10, 20, 25, 25]
    assert decide(0, 0, 500.0, POLICY) == (0.0, 1)
    assert decide(2, 500.0, 505.0, POLICY) == (5.0, 2)  # locked, not counted
    assert decide(2, 500.0, 511.0, POLICY) == (0.0, 3)  # lock over: counted
    assert decide(3, 500.0, 601.0, POLICY) == (0.0, 1)  # window over: forgotten


def _store_contract(make_store: Callable[[], Any]) -> None:
    """Two throttles over one store (two replicas): counts are shared; undo/reset work."""
    clock = FakeClock()
    store = make_store()
    replicas = [LoginThrottle(store, account=POLICY, client=POLICY, clock=clock) for _ in range(2)]
    for throttle in replicas:
        with pytest.raises(AuthenticationError), throttle.attempt(account="a@example.com", client="198.51.100.1"):
            raise AuthenticationError("wrong")
    with pytest.raises(TooManyRequestsError) as info, replicas[0].attempt(account="a@example.com", client=None):
        pass
    assert info.value.retry_after_s == 10
    clock.now += 11
    with replicas[1].attempt(account="a@example.com", client=None):
        pass  # success after the lock: reset
    with replicas[0].attempt(account="a@example.com", client=None):
        pass
    # An attempt that ends in another error is taken back.
    for _ in range(3):
        with pytest.raises(ServiceBusyError), replicas[0].attempt(account="b@example.com", client=None):
            raise ServiceBusyError("busy", retry_after_s=1)
    with replicas[0].attempt(account="b@example.com", client=None):
        pass


def test_memory_store_contract() -> None:
    _store_contract(MemoryThrottleStore)


def test_redis_store_contract() -> None:
    from tests.event_helpers import redis_url, unique_prefix

    url = redis_url()
    prefix = unique_prefix()
    stores: list[RedisThrottleStore] = []

    def make() -> RedisThrottleStore:
        stores.append(RedisThrottleStore(url, prefix=prefix))
        return stores[-1]

    try:
        _store_contract(make)
    finally:
        for store in stores:
            for key in store._client.scan_iter(f"{prefix}:*"):
                store._client.delete(key)
            store.close()


def test_memory_store_keeps_at_most_max_keys() -> None:
    store = MemoryThrottleStore(max_keys=5)
    for i in range(20):
        store.attempt(f"k{i}", 1.0, POLICY)
    assert len(store._entries) == 5 and store.failures("k19") == 1 and store.failures("k0") == 0


# --- bounded hashing ------------------------------------------------------------------------------


class HashCounter:
    """Stands in for the argon2 hasher of `tools.auth`: its hash and verify are the real ones,
    counted (calls, how many run at once, the most at once), optionally held on an event."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: threading.Event | None = None) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.hold = hold
        real = auth_tools._hasher
        self.hash = self._wrap(real.hash)
        self.verify = self._wrap(real.verify)
        self.check_needs_rehash = real.check_needs_rehash
        monkeypatch.setattr(auth_tools, "_hasher", self)

    def _wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.running += 1
                self.calls += 1
                self.peak = max(self.peak, self.running)
            try:
                if self.hold is not None:
                    assert self.hold.wait(30)
                else:
                    time.sleep(0.02)  # widen the overlap; the assertion counts, never times
                return real(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

        return wrapper


def test_register_conflict_hashes_the_password_like_a_new_account(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal timing by equal work: the 409 path computes one argon2 hash, as a new account does."""
    counter = HashCounter(monkeypatch)
    email = _email()
    assert client.post(REGISTER, json={"email": email, "password": DEFAULT_PASSWORD}).status_code == 201
    new_account = counter.calls
    resp = client.post(REGISTER, json={"email": email.upper(), "password": "another password"})
    assert resp.status_code == 409
    assert new_account == counter.calls - new_account == 1


@pytest.mark.slow
def test_concurrent_sign_ins_hash_at_most_the_configured_number_at_once(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        db_url,
        tmp_path,
        password_hash_concurrency=2,
        login_max_failures_per_client=1000,
        login_max_failures_per_account=1000,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        email = _email()
        _register(client, email)
        counter = HashCounter(monkeypatch)
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: _login(client, _email() if i % 2 else email, WRONG).status_code, range(16)))
    assert codes == [401] * 16
    assert counter.calls >= 16
    assert counter.peak == 2


def test_the_gate_bounds_direct_callers_too(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = HashCounter(monkeypatch)
    gate = auth_tools.HashGate(3, wait_s=30)
    with ThreadPoolExecutor(12) as pool:
        hashes = list(pool.map(lambda i: auth_tools.hash_password(f"password {i}", gate), range(12)))
    assert len(set(hashes)) == 12 and counter.peak == 3


def test_the_gate_refuses_with_503_after_waiting(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(db_url, tmp_path, password_hash_concurrency=1, password_hash_wait_s=0.2)
    app = create_app(settings)
    with TestClient(app) as client:
        email = _email()
        _register(client, email)
        hold = threading.Event()
        counter = HashCounter(monkeypatch, hold=hold)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_login, client, email, DEFAULT_PASSWORD)
            while counter.running == 0:  # the first sign-in holds the only slot
                time.sleep(0.01)
            busy = _login(client, email, DEFAULT_PASSWORD)
            busy_register = client.post(REGISTER, json={"email": _email(), "password": DEFAULT_PASSWORD})
            hold.set()
            assert first.result().status_code == 200
        assert busy.status_code == busy_register.status_code == 503
        assert int(busy.headers["retry-after"]) >= 1 and busy.json()["error"] == "ServiceBusyError"
        # Busy answers are not failures: the account is not closer to its lock.
        assert _login(client, email, DEFAULT_PASSWORD).status_code == 200
    with pytest.raises(ServiceBusyError):
        gate = auth_tools.HashGate(1, wait_s=0.05)
        with gate.slot(), gate.slot():
            pass


@pytest.mark.slow
def test_memory_stays_flat_under_concurrent_wrong_logins(db_url: str, tmp_path: Path) -> None:
    """40 concurrent wrong sign-ins against a real server: the peak RSS grows by about
    PASSWORD_HASH_CONCURRENCY x 64 MiB, not 40 x 64 MiB (2.5 GiB before the bound)."""
    import httpx
    import psutil

    from tests.event_helpers import LiveServer, register

    settings = make_settings(
        db_url, tmp_path, password_hash_concurrency=2, password_hash_wait_s=120, login_max_failures_per_client=1000
    )
    proc = psutil.Process()
    with LiveServer(create_app(settings)) as server:
        register(server.url)
        base = proc.memory_info().rss
        peak = base
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()

        def wrong(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                return http.post(TOKEN, data={"username": f"x{i}@example.com", "password": WRONG}).status_code

        try:
            with ThreadPoolExecutor(40) as pool:
                codes = list(pool.map(wrong, range(40)))
        finally:
            done.set()
            sampler.join()
    assert codes == [401] * 40
    assert peak - base < 8 * 64 * 1024**2, f"peak RSS grew by {(peak - base) / 1024**2:.0f} MiB"
