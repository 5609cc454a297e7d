"""What the composition takes from a provider through the protocol: the job kinds it contributes, checked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from idp_bridge.bootstrap import build, create_app, job_kinds
from idp_bridge.bridge import Bridge
from idp_bridge.errors import ConfigError
from idp_bridge.settings import load_settings
from idp_bridge.worker import JobKind, JobView
from tests.conftest import RecordingMail
from tests.fakes.provider import FakeProvider


def sync_directory(bridge: Bridge, job: JobView) -> None:
    """A job a provider plugin might add (e.g. a periodic directory sync)."""


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("fake", jobs={"fake_sync": JobKind(run=sync_directory)})


@pytest.fixture
def bridge(settings_overrides: dict[str, Any], mail: RecordingMail, fake: FakeProvider) -> Iterator[Bridge]:
    b = build(load_settings(overrides=settings_overrides, environ={}), mail=mail, providers={"fake": fake})
    yield b
    b.close()


def test_the_job_kinds_a_provider_contributes_join_the_workers_and_health_report(bridge: Bridge) -> None:
    kinds = job_kinds(bridge)

    assert kinds["fake_sync"].run is sync_directory
    assert "provision_invite" in kinds
    assert "fake_sync" in create_app(bridge=bridge).extensions["idp_bridge_job_kinds"]


def test_a_contribution_that_is_not_a_job_kind_stops_start_up_naming_the_provider(
        bridge: Bridge, fake: FakeProvider) -> None:
    fake.jobs["broken"] = sync_directory

    with pytest.raises(ConfigError) as caught:
        job_kinds(bridge)

    assert caught.value.setting == "providers.fake" and "broken" in str(caught.value)
