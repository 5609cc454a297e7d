"""A standalone worker serves its own Prometheus metrics with `--metrics-port`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from idp_bridge.bootstrap import build, create_app
from idp_bridge.settings import load_settings
from tests.helpers import Api, make_key, make_org
from tests.test_mail_redelivery import free_port


def worker_env(overrides: dict[str, Any]) -> dict[str, str]:
    """This test's settings as IDP_BRIDGE_* variables, with the file mail transport."""
    from tests.test_mail_redelivery import worker_env as smtp_env

    return smtp_env({**overrides, "mail_transport": "file", "smtp_host": "127.0.0.1", "smtp_port": 25,
                     "mail_from": "idp-bridge <no-reply@localhost>"})


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    """Every sample on the worker's /metrics, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_worker_with_a_metrics_port_serves_its_job_counts_and_the_queue(
        settings_overrides: dict[str, Any], stopped: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        make_org(bridge)
        api = Api(create_app(bridge=bridge).test_client(), make_key(bridge))
        api.invite("ann@example.com")
        api.invite("bob@example.com")
    finally:
        bridge.close()
    port = free_port()
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "idp_bridge.cli", "worker", "--metrics-port", str(port)],
                            env=worker_env(settings_overrides), stdout=log, stderr=subprocess.STDOUT, text=True)
    stopped.append(proc)
    done = ("idp_bridge_jobs_total", (("kind", "send_invite_email"), ("outcome", "done")))
    queued = ("idp_bridge_jobs_queued", (("kind", "send_invite_email"),))
    samples = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()
        samples = scrape(port)
        if samples is not None and samples.get(done) == 2:
            break
        time.sleep(0.2)
    assert samples is not None and samples.get(done) == 2, samples
    assert samples[queued] == 0
    assert samples[("idp_bridge_database_up", ())] == 1
    assert len(list((tmp_path / "instance" / "mail").glob("*.eml"))) == 2


def test_a_worker_whose_metrics_port_is_taken_stops_with_a_clear_error(settings_overrides: dict[str, Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**worker_env(settings_overrides), "IDP_BRIDGE_WORKER_METRICS_PORT": str(port)}
        done = subprocess.run([sys.executable, "-m", "idp_bridge.cli", "worker", "--once"], env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"worker metrics cannot listen on 127.0.0.1:{port}" in done.stderr
