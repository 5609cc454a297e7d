"""Fixtures for end-to-end tests: a session-wide headless Chromium and a fresh page per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.browser import CHROMIUM_PATH, launch_chromium

PAGE_TIMEOUT_MS = 15_000


def pytest_configure(config: pytest.Config) -> None:
    """Register the e2e marker so --strict-markers accepts it wherever this conftest loads."""
    config.addinivalue_line("markers", "e2e: end-to-end with a real OpenID Provider and Chromium")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Yield one headless Chromium for the whole session."""
    if not Path(CHROMIUM_PATH).exists():
        reason = f"{CHROMIUM_PATH} is missing (apt-get install chromium)"
        # CI must not go green by skipping every browser test.
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this is an error, not a skip")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium: Browser) -> Iterator[Page]:
    """Yield a page in a fresh browser context, so no cookies leak between tests."""
    with fresh_page(chromium) as page:
        yield page


@contextmanager
def fresh_page(chromium: Browser, **options: Any) -> Iterator[Page]:
    """A page in a browser context of its own (made with `options`), closed afterwards."""
    context = chromium.new_context(**options)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
