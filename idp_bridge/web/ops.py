"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document and its page."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from idp_bridge.bridge import Bridge
from idp_bridge.metrics import exposition
from idp_bridge.models import Job
from idp_bridge.store.db import read_only, reset_write_intent, set_write_intent, transaction
from idp_bridge.supervisor import heartbeat_age, heartbeat_path, stale_after
from idp_bridge.web.api.openapi import document

bp = Blueprint("ops", __name__)

DOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>idp-bridge API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1b1f24}
code{background:#f1f3f5;padding:1px 4px;border-radius:3px}h2{margin-top:2rem}li{margin:.3rem 0}</style></head>
<body><h1>idp-bridge API</h1><p>The machine-readable document is at <a href="/openapi.json">/openapi.json</a>.
Authenticate with <code>Authorization: Bearer ibk_…</code>.</p>{body}</body></html>"""


def _bridge() -> Bridge:
    b: Bridge = current_app.extensions["idp_bridge"]
    return b


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


# A write the database must accept, rolled back: it takes the write lock and proves the database is not
# read-only (a read-only SQLite file or instance dir, a PostgreSQL standby or read-only transaction).
_WRITE_PROBE = text("UPDATE alembic_version SET version_num = version_num")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The database answers and takes writes, and the job worker that serve runs beside it is alive."""
    bridge = _bridge()
    try:
        with read_only(), transaction(bridge.sessions) as session:
            queued = session.scalar(select(func.count(Job.id)).where(Job.status == "queued")) or 0
    except Exception as exc:
        return jsonify(status="unavailable", detail=type(exc).__name__), 503
    intent = set_write_intent(True)  # on SQLite: BEGIN IMMEDIATE, queued behind other writers
    try:
        with bridge.engine.connect() as conn, conn.begin() as probe:
            conn.execute(_WRITE_PROBE)
            probe.rollback()
    except Exception as exc:
        return jsonify(status="unavailable", detail=f"the database refuses writes ({type(exc).__name__})"), 503
    finally:
        reset_write_intent(intent)
    if current_app.config.get("READYZ_JOB_WORKER"):
        age = heartbeat_age(heartbeat_path(bridge.settings.instance_dir))
        if age is None or age > stale_after(bridge.settings.worker_poll_seconds):
            return jsonify(status="unavailable", detail="no job worker is running", jobs_queued=queued), 503
    return jsonify(status="ok", jobs_queued=queued), 200


@bp.get("/metrics")
def metrics() -> Response:
    """Every process's metrics (see idp_bridge.metrics) and the outbox figures, in Prometheus text format."""
    kinds = current_app.extensions.get("idp_bridge_job_kinds", ())
    return Response(exposition(_bridge(), kinds), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document(server_url=_bridge().settings.public_url))


@bp.get("/docs")
def docs() -> Response:
    """A browsable list of operations, generated from the same document."""
    from html import escape

    doc = document(server_url=_bridge().settings.public_url)
    sections: dict[str, list[str]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            sections.setdefault(op["tags"][0], []).append(
                f"<li><code>{method.upper()} {escape(path)}</code> — {escape(op['summary'])}</li>")
    body = "".join(f"<h2>{escape(tag)}</h2><ul>{''.join(items)}</ul>" for tag, items in sections.items())
    return Response(DOCS_PAGE.replace("{body}", body), mimetype="text/html")
