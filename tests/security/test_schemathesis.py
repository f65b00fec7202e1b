"""Property-based run over the app's own OpenAPI schema (schemathesis 4.x): for every operation,
seeded generated requests (valid ones and invalid ones) signed in as a fresh user, and no answer
may be a 5xx (schemathesis' `not_a_server_error` check).

* The app under test is the real one (lifespan, migrations, supervisor), reached in-process through
  schemathesis' ASGI transport (`schemathesis.openapi.from_asgi`); its trainers are a fake that
  sleeps, so a generated request that happens to create a job never trains.
* Bounded and deterministic: `MAX_EXAMPLES` per operation and generation mode, Hypothesis
  `derandomize=True` (a fixed seed), no example database, no shrinking (a failure prints the request
  that failed as a curl command).
* Each operation is its own test id (collected from `create_app(...).openapi()`), so a new route is
  fuzzed without anyone listing it. Nothing is skipped: the operations that could do heavy work
  (POST /jobs, exports, test runs, inference) need a dataset or a finished job with checkpoints
  that the generated ids do not name, so they answer 404/409/422 cheaply; the training a job
  could start is the fake trainer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis  # a dev dependency: a missing one fails the suite, never skips it

from tests.conftest import DEFAULT_PASSWORD, make_settings
from tests.security.conftest import fake_trainer_settings_for

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25  # per operation and generation mode (positive, negative)
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _operations() -> list[Any]:
    """Every operation of the schema, read from an app that is built but not started."""
    from web.main import create_app

    app = create_app(make_settings("sqlite://", Path("/nonexistent-never-written")))
    ops = sorted((m.upper(), p) for p, item in app.openapi()["paths"].items() for m in item if m in HTTP_METHODS)
    return [pytest.param(method, path, id=f"{method} {path}") for method, path in ops]


@dataclass
class Target:
    schema: Any
    headers: dict[str, str]


@pytest.fixture(scope="module")
def target(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    from schemathesis.python import asgi

    from web.main import create_app

    app = create_app(fake_trainer_settings_for(module_db_url, tmp_path_factory.mktemp("fuzz")))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    try:
        email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
        with asgi.get_client(cast(Any, app)) as client:  # (a FastAPI app is an ASGI app)
            r = client.post("/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD})
            assert r.status_code == 201, r.text
            tok = client.post("/api/v1/auth/token", data={"username": email, "password": DEFAULT_PASSWORD})
            assert tok.status_code == 200, tok.text
            headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
            # something to find: ids 1.. of a project and a dataset of this user
            assert client.post("/api/v1/projects", json={"name": "fuzz"}, headers=headers).status_code == 201
            assert client.post("/api/v1/datasets", json={"name": "fuzz"}, headers=headers).status_code == 201
        yield Target(schema, headers)
    finally:
        supervisor = getattr(app.state, "supervisor", None)
        if supervisor is not None:
            supervisor.kill_all()
        asgi.shutdown_lifespans()


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_operation_answers_a_server_error(target: Target, method: str, path: str) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    operation = target.schema[path][method]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=2 * MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        # (the in-process transport re-raises what the app raised after its 500 went out)
        response = case.call(headers=target.headers)
        case.validate_response(response, checks=[not_a_server_error], headers=target.headers)

    run()


def test_found_by_fuzzing_a_nul_byte_in_the_sign_in_email_is_401(client: Any) -> None:
    """PostgreSQL refuses NUL in text: looking the email up answered 500 (found by the run above)."""
    r = client.post("/api/v1/auth/token", data={"username": "a\x00@example.com", "password": DEFAULT_PASSWORD})
    assert r.status_code == 401, r.text
