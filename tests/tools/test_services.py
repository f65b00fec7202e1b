"""`tools.services`: the app's services travel in each ToolContext, never in module globals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools.context import ToolContext
from tools.services import AppServices, JobListeners, WeightsPolicy


def _ctx(**kw: Any) -> ToolContext:
    return ToolContext(db=None, user=None, storage=None, work_dir=Path("."), **kw)  # type: ignore[arg-type]


def test_a_context_without_services_gets_a_fresh_empty_one() -> None:
    a, b = _ctx(), _ctx()
    assert a.services is not b.services
    assert a.services.notifier is None and a.services.inference is None and a.services.event_bus is None
    assert a.services.weights == WeightsPolicy()
    shared = AppServices(weights=WeightsPolicy(download="off"))
    assert _ctx(services=shared).services is _ctx(services=shared).services


def test_job_listeners_hear_each_job_until_removed() -> None:
    heard: list[tuple[str, int]] = []
    listeners = JobListeners()

    def first(job_id: int) -> None:
        heard.append(("first", job_id))

    def second(job_id: int) -> None:
        heard.append(("second", job_id))
        listeners.remove(second)  # a listener may remove itself while being called

    listeners.add(first)
    listeners.add(second)
    listeners.notify(7)
    listeners.notify(8)
    listeners.remove(second)  # removing an absent listener is harmless
    assert heard == [("first", 7), ("second", 7), ("first", 8)]
    assert AppServices().job_listeners is not AppServices().job_listeners  # one set per app


def test_the_weights_policy_names_only_known_download_modes() -> None:
    with pytest.raises(ValueError, match="WEIGHTS_DOWNLOAD must be auto, on or off"):
        WeightsPolicy(download="sometimes")
