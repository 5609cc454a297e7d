"""`make demo`: a real OpenID Provider and idp-bridge on this machine; the printed link, opened in Chromium and
signed in with the printed login and password, makes the invitee an ACTIVE member; Ctrl-C stops both."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page

from tests.e2e.browser import login_error, sign_in
from tests.workdir import checkout_dir, child_env, free_ports, port_open

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# npm ci may run first on a fresh checkout.
READY_TIMEOUT_S = 400.0
STOP_TIMEOUT_S = 60.0
READY_LINE = "Ctrl-C stops both."


@dataclass
class RunningDemo:
    """What `make demo` printed, and where it runs."""

    port: int
    op_port: int
    link: str
    login: str
    password: str
    key: str
    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def interrupt(self) -> None:
        """Ctrl-C: the terminal sends SIGINT to the whole foreground process group (make and the script)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            pytest.fail(f"make demo did not stop within {STOP_TIMEOUT_S:.0f} s of Ctrl-C:\n{self.text()}")


def printed(label: str, text: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}\s+(\S+)\s*$", text, re.MULTILINE)
    assert found is not None, f"make demo printed no {label!r}:\n{text}"
    return found.group(1)


def start_demo(work: Path, port: int, op_port: int) -> tuple[subprocess.Popen[bytes], Path]:
    output = work / "make-demo.out"
    with output.open("wb") as out:
        process = subprocess.Popen(["make", "demo", f"PORT={port}", f"OP_PORT={op_port}"], cwd=work,
                                   env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process, output


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningDemo]:
    work = checkout_dir(tmp_path)
    port, op_port = free_ports(2)
    process, output = start_demo(work, port, op_port)
    running: RunningDemo | None = None
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while READY_LINE not in output.read_text(errors="replace"):
            assert process.poll() is None, f"make demo exited ({process.returncode}):\n{output.read_text()}"
            assert time.monotonic() < deadline, f"make demo not ready in {READY_TIMEOUT_S:.0f} s:\n{output.read_text()}"
            time.sleep(0.5)
        text = output.read_text()
        running = RunningDemo(port, op_port, printed("Invitation link:", text), printed("login:", text),
                              printed("password:", text), printed("API key (org demo):", text), process, output)
        yield running
    finally:
        if process.poll() is None:
            if running is None:
                running = RunningDemo(port, op_port, "", "", "", "", process, output)
            running.interrupt()


def members(demo: RunningDemo) -> list[dict[str, str]]:
    resp = requests.get(f"http://127.0.0.1:{demo.port}/api/v1/orgs/demo/members",
                        headers={"Authorization": f"Bearer {demo.key}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


def test_make_demo_prints_a_link_that_signing_in_at_the_op_redeems_and_ctrl_c_stops_both(
        demo: RunningDemo, new_page: Page) -> None:
    assert demo.link.startswith(f"http://127.0.0.1:{demo.port}/invite/")
    assert [(m["identifier"], m["status"]) for m in members(demo)] == [("ada@example.com", "INVITED")]

    new_page.goto(demo.link)
    new_page.get_by_role("link", name="Sign in to accept").click()
    assert new_page.url.startswith(f"http://127.0.0.1:{demo.op_port}/")
    sign_in(new_page, demo.login, password="not-" + demo.password)
    new_page.locator("#error").wait_for()
    assert login_error(new_page) == "Wrong password."
    sign_in(new_page, demo.login, password=demo.password)
    new_page.get_by_role("heading", name="Welcome to Demo organization").wait_for()

    assert [(m["identifier"], m["status"]) for m in members(demo)] == [("ada@example.com", "ACTIVE")]

    demo.interrupt()
    assert "demo stopped" in demo.text()
    assert not port_open(demo.port) and not port_open(demo.op_port)


def test_make_demo_on_a_port_in_use_stops_at_once_naming_it(tmp_path: Path) -> None:
    work = checkout_dir(tmp_path)
    (op_port,) = free_ports(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = int(taken.getsockname()[1])
        done = subprocess.run(["make", "demo", f"PORT={port}", f"OP_PORT={op_port}"], cwd=work, env=child_env(),
                              capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode != 0
    assert f"demo: error: 127.0.0.1:{port} is already in use; choose another port (make demo PORT=...)" in done.stderr
    assert not (work / "demo-instance").exists()
    assert not port_open(op_port)


def test_make_demo_leaves_a_directory_it_did_not_make_alone(tmp_path: Path) -> None:
    work = checkout_dir(tmp_path)
    port, op_port = free_ports(2)
    mine = work / "demo-instance" / "notes.txt"
    mine.parent.mkdir()
    mine.write_text("keep me")

    done = subprocess.run(["make", "demo", f"PORT={port}", f"OP_PORT={op_port}"], cwd=work, env=child_env(),
                          capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode != 0
    assert f"demo: error: {work / 'demo-instance'} exists and was not made by the demo" in done.stderr
    assert mine.read_text() == "keep me"
    assert not port_open(port) and not port_open(op_port)
