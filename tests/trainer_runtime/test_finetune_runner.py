"""The runner's part of fine-tuning (fake adapter, in process): it downloads the source checkpoint
by the key the spec carries and hands it to the adapter as `ctx.init_weights`, records the source
in the MLflow params, fails with a clear error when the checkpoint is gone, and does not fetch it
for a resume (last.pt has the weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.trainer_runtime.fake_adapter import FakeAdapter
from tests.trainer_runtime.test_runner import LateRunLogger, check_contract, env, of  # noqa: F401
from trainer_runtime.adapters.base import TrainResult
from trainer_runtime.runner import EXIT_COMPLETED, EXIT_FAILED

KEY = "checkpoints/test-jobs/job_1/best.pt"
INIT = {"job_id": 1, "checkpoint": "best.pt", "key": KEY, "framework": "timm", "model_name": "fake-net"}


class SeeingAdapter(FakeAdapter):
    """The fake adapter, noting what the runner gave it to start from."""

    seen: ClassVar[list[bytes | None]] = []

    def train(self) -> TrainResult:
        path = self.ctx.init_weights
        SeeingAdapter.seen.append(Path(path).read_bytes() if path is not None else None)
        return super().train()


class ParamsLogger(LateRunLogger):
    params: ClassVar[list[dict[str, Any]]] = []

    def start(self, params: Any, *, resume: bool = False) -> None:
        ParamsLogger.params.append(dict(params))
        super().start(params, resume=resume)


def test_source_checkpoint_is_downloaded_by_its_key(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr("trainer_runtime.runner.MlflowLogger", ParamsLogger)
    SeeingAdapter.seen.clear()
    env.storage.internal.put_bytes(KEY, b"source weights")
    code, events = env.run(env.spec(epochs=1, init_from=INIT), adapter=SeeingAdapter)
    assert code == EXIT_COMPLETED
    check_contract(events)
    assert SeeingAdapter.seen == [b"source weights"]
    messages = [e["message"] for e in of(events, "log")]
    assert "fine-tuning: fetched job 1's best.pt to initialise the model" in messages
    assert ParamsLogger.params[-1]["init_from"] == {
        "job_id": 1,
        "checkpoint": "best.pt",
        "framework": "timm",
        "model_name": "fake-net",
    }


def test_a_plain_job_gets_nothing_to_start_from(env: Any) -> None:  # noqa: F811
    SeeingAdapter.seen.clear()
    code, _ = env.run(env.spec(epochs=1), adapter=SeeingAdapter)
    assert code == EXIT_COMPLETED and SeeingAdapter.seen == [None]


def test_a_missing_source_checkpoint_fails_the_job_clearly(env: Any) -> None:  # noqa: F811
    code, events = env.run(env.spec(epochs=1, init_from=INIT), adapter=SeeingAdapter)
    assert code == EXIT_FAILED
    err = of(events, "error")[0]
    assert err["error_type"] == "init_checkpoint_missing"
    assert f"job 1's best.pt to start from is gone from the internal store ({KEY})" in err["message"]


def test_a_resume_does_not_fetch_the_source_again(env: Any) -> None:  # noqa: F811
    env.storage.internal.put_bytes(KEY, b"source weights")
    SeeingAdapter.seen.clear()
    spec = env.spec(epochs=2, init_from=INIT)
    assert env.run(spec, adapter=SeeingAdapter)[0] == EXIT_COMPLETED
    code, events = env.run(spec, resume=True, adapter=SeeingAdapter)
    assert code == EXIT_COMPLETED
    assert SeeingAdapter.seen == [b"source weights", None]
    assert not any("fine-tuning: fetched" in e["message"] for e in of(events, "log"))
