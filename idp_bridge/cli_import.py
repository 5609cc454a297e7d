"""`idp-bridge invite import`: a CSV file into one org, with a progress bar, a summary and an errors file."""

from __future__ import annotations

from pathlib import Path

import click

from idp_bridge import audit, csvio
from idp_bridge.bridge import Bridge
from idp_bridge.services import bulk, orgs
from idp_bridge.store.db import transaction

SHOWN_FAILURES = 20


def reason(result: bulk.RowResult) -> str:
    """A row's errors as one line: `column: message; column: message`."""
    return result.reason()


def run(bridge: Bridge, path: Path, org_slug: str, *, dry_run: bool, atomic: bool, role: str | None,
        errors_out: Path | None) -> int:
    """Import the file; returns the exit code (1 when any row is invalid)."""
    header, records = csvio.read(csvio.decode(path.read_bytes()), max_rows=bulk.MAX_ROWS)
    rows = list(records)
    by_number = {r.row: r for r in rows}
    with transaction(bridge.sessions) as session:
        org = orgs.get(session, org_slug)
        total = len(rows) * (1 if dry_run else 2)
        with click.progressbar(length=total, label="Checking and writing" if not dry_run else "Checking",
                               show_pos=True) as bar:
            try:
                outcome = bulk.import_invites(
                    session, bridge, audit.CLI, org,
                    (bulk.RawRow(r.row, header.fields(r), header.problems(r)) for r in rows),
                    defaults={"role": role} if role else {}, column_of=header.column_of, dry_run=dry_run,
                    atomic=atomic, progress=bar.update)
            except bulk.BatchRejected as exc:
                outcome = bulk.ImportReport(exc.rows, dry_run=True)
                click.echo(f"Atomic import refused: {exc.detail}.")
    failed = outcome.failed()
    if errors_out is not None:
        with errors_out.open("w", encoding="utf-8-sig", newline="") as out:
            out.writelines(csvio.error_rows(header, ((by_number[r.row], reason(r)) for r in failed)))
    _summary(outcome, errors_out)
    for warning in outcome.warnings:
        click.echo(f"Warning: {warning}", err=True)
    return 1 if failed else 0


def _summary(outcome: bulk.ImportReport, errors_out: Path | None) -> None:
    counts = outcome.summary()
    if outcome.dry_run:
        click.echo("Nothing was written.")
    label = {"created": "would be created" if outcome.dry_run else "created", "duplicate": "duplicate",
             "invalid": "invalid"}
    width = max(len(v) for v in label.values())
    for key, text in label.items():
        click.echo(f"  {text:<{width}}  {counts[key]:>6}")
    failed = outcome.failed()
    if not failed:
        return
    click.echo("")
    click.echo(f"  {'row':>6}  reason")
    for r in failed[:SHOWN_FAILURES]:
        click.echo(f"  {r.row:>6}  {reason(r)}")
    if len(failed) > SHOWN_FAILURES:
        click.echo(f"  … and {len(failed) - SHOWN_FAILURES} more")
    if errors_out is not None:
        click.echo(f"Failed rows and their reasons are in {errors_out}; fix them there and import that file.")
