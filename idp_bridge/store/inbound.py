"""The inbox's batch write: verified events and one processing job per event stored, in as few statements as
each database allows (one on PostgreSQL, two compiled executemanys on SQLite)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text

from idp_bridge.models import InboundEvent, Job, utcnow
from idp_bridge.store.compiled import compiled, insert_new_rows
from idp_bridge.store.db import json_dumps
from idp_bridge.store.ids import new_ids
from idp_bridge.store.sql import flavor, table_of


@dataclass(frozen=True)
class JobSpec:
    """The job queued for each stored event: its kind, status and attempts; the payload names the event."""

    kind: str
    status: str
    max_attempts: int


def write_events(conn: Connection, events: Sequence[tuple[str, str, str, Mapping[str, Any]]], *, status: str,
                 job: JobSpec) -> None:
    """Insert (source, event_id, body, headers) events with `status`, and a job for each one stored; a (source,
    event_id) already stored, or twice in the batch, is skipped and gets no job of its own.

    Row ids are time-ordered and the jobs need no dedupe key (the event's unique constraint already decides),
    so a batch dirties few index pages beyond those of the (source, event_id) constraint.
    """
    if not events:
        return
    if flavor(conn).writes_in_cte:
        _write_in_one_statement(conn, events, status, job)
        return
    now = utcnow()
    ids = new_ids(2 * len(events))
    rows = [{"id": ids[2 * i], "source": source, "event_id": event_id, "body": body, "headers": dict(headers)}
            for i, (source, event_id, body, headers) in enumerate(events)]
    queued = [{"id": ids[2 * i + 1], "payload": {"source": row["source"], "event_id": row["event_id"]}}
              for i, row in enumerate(rows)]
    events_table, jobs_table = table_of(InboundEvent), table_of(Job)
    stored = insert_new_rows(conn, events_table, rows, {"status": status, "error": None, "received_at": now,
                                                        "processed_at": None})
    if stored != len(rows):
        # Some were duplicates (of stored events, or of each other): queue jobs only for the rows that went in.
        present = set(conn.scalars(select(events_table.c.id).where(events_table.c.id.in_([r["id"] for r in rows]))))
        queued = [entry for row, entry in zip(rows, queued, strict=True) if row["id"] in present]
    insert_new_rows(conn, jobs_table, queued, {
        "kind": job.kind, "org_id": None, "dedupe_key": None, "status": job.status, "attempts": 0,
        "max_attempts": job.max_attempts, "run_after": now, "locked_until": None, "locked_by": None,
        "last_error": None, "created_at": now, "finished_at": None})


# The whole batch in one statement and one round trip: events from arrays, and a job for each row that went in
# (RETURNING leaves out the rows ON CONFLICT skipped). One statement is atomic on its own, so it is also correct
# on an autocommit connection.
_ONE_STATEMENT = text("""
WITH stored AS (
    INSERT INTO inbound_events (id, source, event_id, body, headers, status, error, received_at, processed_at)
    SELECT e.id, e.source, e.event_id, e.body, e.headers::jsonb, :status, NULL, :now, NULL
    FROM unnest(:ids ::varchar[], :sources ::varchar[], :event_ids ::varchar[], :bodies ::text[],
                :headers ::text[]) AS e(id, source, event_id, body, headers)
    ON CONFLICT DO NOTHING
    RETURNING id, source, event_id
)
INSERT INTO jobs (id, kind, payload, org_id, dedupe_key, status, attempts, max_attempts, run_after, locked_until,
                  locked_by, last_error, created_at, finished_at)
SELECT j.job_id, :kind, jsonb_build_object('source', stored.source, 'event_id', stored.event_id), NULL,
       NULL, :job_status, 0, :max_attempts, :now, NULL, NULL, NULL, :now, NULL
FROM stored JOIN unnest(:ids ::varchar[], :job_ids ::varchar[]) AS j(event_row_id, job_id)
    ON j.event_row_id = stored.id
""")


def _write_in_one_statement(conn: Connection, events: Sequence[tuple[str, str, str, Mapping[str, Any]]],
                            status: str, job: JobSpec) -> None:
    ids = new_ids(2 * len(events))
    compiled(conn, "inbound.write_events", lambda: _ONE_STATEMENT).run(conn, {
        "now": utcnow(), "status": status, "kind": job.kind, "job_status": job.status,
        "max_attempts": job.max_attempts, "ids": ids[0::2], "job_ids": ids[1::2],
        "sources": [e[0] for e in events], "event_ids": [e[1] for e in events], "bodies": [e[2] for e in events],
        "headers": [json_dumps(dict(e[3])) for e in events]})
