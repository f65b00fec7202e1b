"""Signed download links and the model card's pretrained line, without a server."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from tools.downloads import LinkClaim, _pretrained, checkpoint_filename, sign_token, verify_link
from tools.errors import AuthenticationError

SECRET = "s" * 48


def test_a_link_verifies_until_it_expires_and_only_with_its_secret() -> None:
    claim = LinkClaim(user_id=7, job_id=12, obj="best", export_id=None, expires_at=1000.0)
    token = sign_token(SECRET, claim)
    assert verify_link(SECRET, token, now=999.0) == claim
    with pytest.raises(AuthenticationError, match="expired at 1970-01-01T00:16:40Z"):
        verify_link(SECRET, token, now=1000.0)
    with pytest.raises(AuthenticationError, match="signature is not valid"):
        verify_link("another-" + SECRET, token, now=0.0)
    for bad in ("", "v1", "v2." + token[3:], token + ".x", "v1.!!.??", "x" * 5000):
        with pytest.raises(AuthenticationError):
            verify_link(SECRET, bad, now=0.0)
    export = LinkClaim(user_id=7, job_id=12, obj="export", export_id=3, expires_at=1000.0)
    assert verify_link(SECRET, sign_token(SECRET, export), now=0.0).export_id == 3
    assert sign_token(SECRET, export) != sign_token(SECRET, claim)


def _job(**fields: Any) -> Any:
    values = {"init_from": None, "pretrained": None, "id": 12, "model_name": "resnet18"}
    return cast(Any, SimpleNamespace(**{**values, **fields}))


def test_the_pretrained_line_says_what_the_job_recorded_and_nothing_more() -> None:
    unknown = _pretrained(_job())
    assert unknown.recorded is False and unknown.pretrained is None and unknown.source.startswith("unknown")
    hub = _pretrained(
        _job(pretrained={"source": "hub", "detail": "timm resnet50.a1_in1k", "pretraining": "ImageNet-1k"})
    )
    assert hub.pretrained is True and hub.source == "pretrained on ImageNet-1k (timm resnet50.a1_in1k, from hub)"
    scratch = _pretrained(_job(pretrained={"source": "scratch", "warning": "no pretrained weights are available"}))
    assert scratch.pretrained is False and scratch.source == "from scratch: no pretrained weights are available"
    planned = _pretrained(_job(pretrained={"source": "registry", "detail": "yolo11n.pt", "planned": True}))
    assert "did not confirm" in planned.source
    tuned = _pretrained(_job(init_from={"job_id": 3, "checkpoint": "best.pt", "model_name": "resnet18"}))
    assert tuned.pretrained is True and tuned.source == "fine-tuned from job 3 (best.pt, resnet18)"


def test_file_names_are_safe() -> None:
    assert checkpoint_filename(_job(model_name="google/vit-base-patch16-224"), "best") == (
        "job-12-google-vit-base-patch16-224-best.pt"
    )
    assert checkpoint_filename(_job(model_name='a"b\\c'), "last") == "job-12-a-b-c-last.pt"
