"""Headless Chromium (Debian's build, never a Playwright download) and OP page helpers."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, Playwright

CHROMIUM_PATH = "/usr/bin/chromium"
# No sandbox because tests run as root in containers; the rest keep Chromium from
# reaching the network on its own (updates, sync, QUIC probes) on an offline machine.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LOGIN_INPUT = "#login"
PASSWORD_INPUT = "#password"
SIGN_IN_BUTTON = "button[type=submit]"
LOGIN_ERROR = "#error"


def launch_chromium(
    playwright: Playwright, *, executable_path: str = CHROMIUM_PATH, headless: bool = True
) -> Browser:
    """Launch the system Chromium through Playwright."""
    return playwright.chromium.launch(
        executable_path=executable_path,
        headless=headless,
        args=list(CHROMIUM_ARGS),
    )


def sign_in(page: Page, login: str, *, password: str | None = None, timeout_ms: float = 15_000) -> None:
    """Wait for the test OP's login form, type `login` (and `password`, for an account that has one) and submit."""
    field = page.locator(LOGIN_INPUT)
    field.wait_for(state="visible", timeout=timeout_ms)
    field.fill(login)
    if password is not None:
        page.locator(PASSWORD_INPUT).fill(password)
    page.locator(SIGN_IN_BUTTON, has_text="Sign in").click(timeout=timeout_ms)


def login_error(page: Page) -> str | None:
    """Return the error the OP's login form shows, or None when it shows none."""
    error = page.locator(LOGIN_ERROR)
    return error.inner_text() if error.count() else None
