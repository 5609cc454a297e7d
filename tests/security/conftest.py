"""Fixtures of the secrets tests: the faked OPs of the page tests, and a bridge rebuilt with a new secret key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from idp_bridge.bootstrap import build
from idp_bridge.bridge import Bridge
from idp_bridge.settings import load_settings
from tests.conftest import RecordingMail
from tests.pages.conftest import ops  # noqa: F401  (the fixture, shared with the page tests)

Rekey = Callable[..., Bridge]


@pytest.fixture
def rekeyed(settings_overrides: dict[str, Any], mail: RecordingMail) -> Iterator[Rekey]:
    """Build the same deployment again after an operator changed its secret key (same database, same mail)."""
    built: list[Bridge] = []

    def make(new_key: str, fallbacks: list[str]) -> Bridge:
        overrides = {**settings_overrides, "secret_key": new_key, "secret_key_fallbacks": fallbacks}
        b = build(load_settings(overrides=overrides, environ={}), mail=mail)
        built.append(b)
        return b

    yield make
    for b in built:
        b.close()
