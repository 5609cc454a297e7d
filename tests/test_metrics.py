"""/metrics on its own: queue figures read at scrape time, and what happens without a metrics directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from idp_bridge import metrics
from idp_bridge.bootstrap import build, create_app, job_kinds
from idp_bridge.settings import load_settings


def samples(app: Flask, name: str) -> dict[str, float]:
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    return {s.labels.get("kind", ""): s.value for f in text_string_to_metric_families(resp.get_data(as_text=True))
            for s in f.samples if s.name == name}


def test_every_job_kind_has_its_queue_series_from_the_start(app: Flask) -> None:
    kinds = set(job_kinds(app.extensions["idp_bridge"]))

    queued, failed = samples(app, "idp_bridge_jobs_queued"), samples(app, "idp_bridge_jobs_failed")

    assert "send_invite_email" in kinds and "deliver_webhook" in kinds
    assert queued == dict.fromkeys(kinds, 0.0) and failed == dict.fromkeys(kinds, 0.0)
    assert samples(app, "idp_bridge_database_up") == {"": 1.0}
    assert samples(app, "idp_bridge_jobs_oldest_due_seconds") == {"": 0.0}


def test_a_database_that_does_not_answer_shows_as_down_and_the_scrape_still_succeeds(
        tmp_path: Path, settings_overrides: dict[str, Any]) -> None:
    # A database file that is not a database: every query fails.
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"not a database" * 100)
    bridge = build(load_settings(environ={}, overrides={**settings_overrides, "database_url": f"sqlite:///{broken}"}))
    try:
        app = create_app(bridge=bridge)

        assert samples(app, "idp_bridge_database_up") == {"": 0.0}
        assert samples(app, "idp_bridge_jobs_queued") == {}
    finally:
        bridge.close()


def test_serve_keeps_per_process_metrics_when_the_metrics_directory_cannot_be_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    monkeypatch.setattr(metrics, "_console", True)
    (tmp_path / "metrics").write_text("a file where the directory should be")
    chosen = values.ValueClass

    assert metrics.share_between_processes(tmp_path, sweep=True) is None

    assert metrics.MULTIPROC_ENV not in os.environ and values.ValueClass is chosen
    assert "metrics stay per process" in caplog.text
