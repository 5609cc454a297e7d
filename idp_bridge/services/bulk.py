"""Bulk invites: validate a whole batch first, then write it with one many-row insert per table and chunk."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Table, select
from sqlalchemy.orm import Session

from idp_bridge import csvio
from idp_bridge.audit import Actor
from idp_bridge.domain.events import event_row
from idp_bridge.domain.invitation import new_invitation
from idp_bridge.errors import PayloadTooLarge, ValidationFailed, joined, lazy_gettext
from idp_bridge.inputs import BulkInviteBody, InviteDefaults, InviteInput, errors_from, looks_like_email
from idp_bridge.jobs import job_row
from idp_bridge.models import (
    AuditEvent,
    Event,
    Invite,
    InviteLink,
    InviteStatus,
    Job,
    Member,
    MemberStatus,
    Organization,
    ProvisioningState,
    utcnow,
)
from idp_bridge.security import keyed_hash, new_invite_code, new_token, sealer, token_hash
from idp_bridge.services import invites, orgs
from idp_bridge.services.ports import WithProviders
from idp_bridge.store.compiled import insert_rows
from idp_bridge.store.ids import event_id_of, id_stream
from idp_bridge.store.sql import table_of

MAX_ROWS = 10_000
CHUNK_ROWS = 1_000
CREATED = "created"
DUPLICATE = "duplicate"
INVALID = "invalid"

# Rows go to the driver ready-made, one COPY or executemany per table and chunk (see store.compiled).
MEMBERS: Table = table_of(Member)
INVITES: Table = table_of(Invite)
LINKS: Table = table_of(InviteLink)
JOBS: Table = table_of(Job)
EVENTS: Table = table_of(Event)
AUDIT: Table = table_of(AuditEvent)

Progress = Callable[[int], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRow:
    """One row as sent: its number in the file or list, and its fields (or a bare identifier)."""

    row: int
    data: Any
    problems: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class RowResult:
    """What happened to one row."""

    row: int
    status: str
    id: str | None = None
    existing_id: str | None = None
    errors: dict[str, list[str]] | None = None

    def reason(self) -> str:
        """The row's errors as one line: `column: message; column: message`."""
        return joined("; ", (lazy_gettext("%(field)s: %(problem)s", field=column, problem=message)
                             for column, messages in (self.errors or {}).items() for message in messages))


@dataclass
class ImportReport:
    """Per-row results of a bulk invite, in row order."""

    rows: list[RowResult]
    dry_run: bool
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        counts = {CREATED: 0, DUPLICATE: 0, INVALID: 0}
        for r in self.rows:
            counts[r.status] += 1
        return counts

    def failed(self) -> list[RowResult]:
        return [r for r in self.rows if r.status == INVALID]


class BatchRejected(ValidationFailed):
    """An atomic batch with invalid rows: nothing was written."""

    code = "bulk_rejected"
    title = lazy_gettext("Invalid rows; nothing was written")

    def __init__(self, errors: dict[str, list[str]], detail: str, rows: list[RowResult]) -> None:
        super().__init__(errors, detail)
        self.rows = rows
        self.extra["summary"] = ImportReport(rows, dry_run=True).summary()


@dataclass
class _Valid:
    row: int
    prepared: invites.Prepared
    result: RowResult


def field_name(field: str) -> str:
    """JSON rows report errors under the field names they were sent with."""
    return field


def json_rows(body: Any, role: str | None = None) -> tuple[dict[str, Any], list[RawRow]]:
    """Defaults and rows of a JSON bulk body: {"defaults", "invites"} or a plain list of identifiers."""
    if isinstance(body, list):
        body = {"invites": body}
    if not isinstance(body, dict):
        raise ValidationFailed({"body": [lazy_gettext("must be a JSON object with `invites`, or a JSON list")]})
    rows = body.get("invites", [])
    if not isinstance(rows, list):
        raise ValidationFailed({"invites": [lazy_gettext("must be a list of invite objects or identifiers")]})
    if len(rows) > MAX_ROWS:
        raise PayloadTooLarge(lazy_gettext("%(count)s invites in one request; at most %(most)s", count=len(rows),
                                           most=MAX_ROWS), max_rows=MAX_ROWS)
    try:
        envelope = BulkInviteBody.model_validate({k: v for k, v in body.items() if k != "invites"})
    except ValidationError as exc:
        raise ValidationFailed(errors_from(exc)) from exc
    defaults = envelope.defaults.model_dump(exclude_none=True)
    chosen = envelope.role or role
    if chosen:
        defaults["role"] = chosen
    return defaults, [RawRow(i, data) for i, data in enumerate(rows, start=1)]


@dataclass(frozen=True)
class Upload:
    """A bulk body read into rows: the defaults, the rows, and how a field is named in errors."""

    defaults: dict[str, Any]
    rows: Iterable[RawRow]
    column_of: Callable[[str], str] = field_name


def read_upload(body: Any, role: str | None = None) -> Upload:
    """A CSV file (bytes) or a JSON body, as rows; `role` is the default role the request names."""
    if isinstance(body, bytes):
        header, records = csvio.read(csvio.decode(body), max_rows=MAX_ROWS)
        return Upload({"role": role} if role else {},
                      (RawRow(r.row, header.fields(r), header.problems(r)) for r in records), header.column_of)
    defaults, listed = json_rows(body, role)
    return Upload(defaults, listed)


def check_defaults(defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults validated on their own, so a bad default is one clear error, not one per row."""
    try:
        return InviteDefaults.model_validate(dict(defaults)).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise ValidationFailed(errors_from(exc, "defaults.")) from exc


def _merge(defaults: dict[str, Any], data: Any) -> Any:
    if isinstance(data, str):
        data = {"identifier": data}
    if not isinstance(data, dict):
        return data
    merged = {**defaults, **{k: v for k, v in data.items() if v is not None}}
    if defaults.get("attributes") and isinstance(data.get("attributes", {}), dict):
        merged["attributes"] = {**defaults["attributes"], **data.get("attributes", {})}
    return merged


def _chunks(rows: Iterable[RawRow], size: int) -> Iterator[list[RawRow]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def import_invites(session: Session, deps: WithProviders, actor: Actor, org: Organization, rows: Iterable[RawRow],
                   *, defaults: Mapping[str, Any] | None = None, column_of: Callable[[str], str] = field_name,
                   dry_run: bool = False, atomic: bool = False, inviter: str = "",
                   progress: Progress | None = None) -> ImportReport:
    """Check every row, then (unless dry_run) write the new ones; atomic refuses the batch on any invalid row."""
    if not dry_run:
        return _run(session, deps, actor, org, rows, defaults=defaults, column_of=column_of, dry_run=False,
                    atomic=atomic, inviter=inviter, progress=progress)
    # Even the expiry sweep a check starts with is undone: a dry run leaves the database as it found it.
    savepoint = session.begin_nested()
    try:
        return _run(session, deps, actor, org, rows, defaults=defaults, column_of=column_of, dry_run=True,
                    atomic=atomic, inviter=inviter, progress=progress)
    finally:
        savepoint.rollback()


def _run(session: Session, deps: WithProviders, actor: Actor, org: Organization, rows: Iterable[RawRow],
         *, defaults: Mapping[str, Any] | None, column_of: Callable[[str], str], dry_run: bool, atomic: bool,
         inviter: str, progress: Progress | None) -> ImportReport:
    base = check_defaults(defaults or {})
    orgs.lock(session, org)
    for _ in range(100):
        if invites.expire_due(session, actor, org_id=org.id) < 500:
            break
    results: list[RowResult] = []
    valid: list[_Valid] = []
    first_row: dict[str, _Valid] = {}
    repeats: list[tuple[RowResult, _Valid]] = []
    count = 0
    for chunk in _chunks(rows, CHUNK_ROWS):
        count += len(chunk)
        if count > MAX_ROWS:
            raise PayloadTooLarge(lazy_gettext("more than %(most)s rows in one import; split the file", most=MAX_ROWS),
                                  max_rows=MAX_ROWS)
        fresh: list[_Valid] = []
        for raw in chunk:
            checked = _check(deps, org, raw, base, column_of)
            results.append(checked.result if isinstance(checked, _Valid) else checked)
            if not isinstance(checked, _Valid):
                continue
            earlier = first_row.get(checked.prepared.key)
            if earlier is not None:
                checked.result.status = DUPLICATE
                checked.result.errors = {column_of("identifier"): [lazy_gettext("repeats row %(row)s of this batch",
                                                                                   row=earlier.row)]}
                repeats.append((checked.result, earlier))
                continue
            first_row[checked.prepared.key] = checked
            fresh.append(checked)
        valid.extend(_drop_existing(session, org, fresh, column_of))
        if progress is not None:
            progress(len(chunk))
    if atomic and any(r.status == INVALID for r in results):
        failed = [r for r in results if r.status == INVALID]
        errors = {f"rows[{r.row}].{col}": msgs for r in failed for col, msgs in (r.errors or {}).items()}
        results.sort(key=lambda r: r.row)
        raise BatchRejected(errors, lazy_gettext("%(failed)s of %(rows)s rows are invalid; nothing was written",
                                                 failed=len(failed), rows=len(results)), results)
    invites.require_seats(session, org, len(valid), batch=True)
    if not dry_run:
        _write(session, deps, actor, org, valid, inviter or str(actor), progress)
    for result, earlier in repeats:
        result.existing_id = earlier.result.id or earlier.result.existing_id
    results.sort(key=lambda r: r.row)
    warnings = invites.redeem_warnings(deps, org, {v.prepared.data.provider for v in valid})
    if warnings and not dry_run:
        log.warning("%d invites in %s: %s", len(valid), org.slug, "; ".join(warnings))
    return ImportReport(results, dry_run, warnings)


def _check(deps: WithProviders, org: Organization, raw: RawRow, defaults: dict[str, Any],
           column_of: Callable[[str], str]) -> _Valid | RowResult:
    """Validate one row against the input rules, the deployment and the org."""
    if raw.problems:
        return RowResult(raw.row, INVALID, errors=raw.problems)
    data = _merge(defaults, raw.data)
    if not isinstance(data, dict):
        return RowResult(raw.row, INVALID, errors={"row": [lazy_gettext("must be an invite object or an identifier")]})
    try:
        prepared = invites.prepare(deps, org, InviteInput.model_validate(data))
    except ValidationError as exc:
        return RowResult(raw.row, INVALID, errors=_by_column(errors_from(exc), column_of))
    except ValidationFailed as exc:
        return RowResult(raw.row, INVALID, errors=_by_column(exc.errors, column_of))
    return _Valid(raw.row, prepared, RowResult(raw.row, CREATED))


def _by_column(errors: dict[str, list[str]], column_of: Callable[[str], str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, messages in errors.items():
        out.setdefault(column_of(name), []).extend(messages)
    return out


def _drop_existing(session: Session, org: Organization, fresh: list[_Valid],
                   column_of: Callable[[str], str]) -> list[_Valid]:
    """Mark rows whose identifier already has a live member or pending invite; return the rest."""
    if not fresh:
        return []
    keys = [v.prepared.key for v in fresh]
    stmt = (select(Member.identifier_key, Member.id, Member.status, Invite.id)
            .outerjoin(Invite, (Invite.member_id == Member.id) & (Invite.status == InviteStatus.PENDING))
            .where(Member.org_id == org.id, Member.status != MemberStatus.DELETED,
                   Member.identifier_key.in_(keys)))
    existing = {key: (member_id, status, invite_id) for key, member_id, status, invite_id in session.execute(stmt)}
    left = []
    for v in fresh:
        found = existing.get(v.prepared.key)
        if found is None:
            left.append(v)
            continue
        member_id, status, invite_id = found
        v.result.status = DUPLICATE
        if status == MemberStatus.INVITED:
            v.result.existing_id = invite_id or member_id
            v.result.errors = {column_of("identifier"): [lazy_gettext("already has a pending invitation")]}
        else:
            v.result.existing_id = member_id
            v.result.errors = {column_of("identifier"): [lazy_gettext("is already a member (%(status)s)",
                                                                       status=status)]}
    return left


def _write(session: Session, deps: WithProviders, actor: Actor, org: Organization, valid: list[_Valid], inviter: str,
           progress: Progress | None) -> None:
    """Insert members, invites, links, outbox jobs, events and audit rows, a chunk at a time."""
    issuer = Issuer(deps, actor, org, inviter)
    for start in range(0, len(valid), CHUNK_ROWS):
        chunk = valid[start:start + CHUNK_ROWS]
        batch = issuer.batch(len(chunk))
        for v in chunk:
            v.result.id = batch.add(v.prepared)[1]["id"]
        batch.write(session.connection())
        if progress is not None:
            progress(len(chunk))


class Issuer:
    """Issues new invitations as rows: what every row of a batch shares, worked out once (the sealing key, the
    providers that provision, the org's columns as plain values). Bulk imports and a directory's creates
    (services/directory.py) write their invitations through it."""

    def __init__(self, deps: WithProviders, actor: Actor, org: Organization, inviter: str) -> None:
        self.seal = sealer(deps.settings.secret_key)
        self.secret = deps.settings.secret_key
        self.max_attempts = deps.settings.job_max_attempts
        self.actor = actor
        self.created_by = str(actor)
        self.inviter = inviter
        self.provisions = {name: p.provisioner() is not None for name, p in deps.providers.items()}
        # Plain values: add() runs once per row, and ORM attribute and enum lookups add up at 10,000 rows.
        self.org_id, self.slug = org.id, org.slug
        self.default_ttl, self.with_code = org.invite_ttl_hours, org.require_invite_code

    def batch(self, count: int) -> Batch:
        """Rows for up to `count` invitations stamped with one `now`."""
        return Batch(self, count)


class Batch:
    """The rows of some new invitations: member, invite, link, outbox job, event and audit row each, built with
    the builders a single invite uses (services.invites.insert), then written with one insert per table."""

    def __init__(self, issuer: Issuer, count: int) -> None:
        self.issuer = issuer
        self.now = utcnow()
        self.members: list[dict[str, Any]] = []
        self.invites: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []
        self.jobs: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []
        self._ids = id_stream(5 * count)
        self._expiry = {issuer.default_ttl: self.now + timedelta(hours=issuer.default_ttl)}

    def add(self, prepared: invites.Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        """Build one invitation's rows; returns its member and invite rows (the member's columns may still be
        changed before write(): the event and audit row already hold what they report)."""
        issuer, now, ids = self.issuer, self.now, self._ids
        data, identifier = prepared.data, prepared.identifier
        member_id, invite_id, job_id, audit_id = next(ids), next(ids), next(ids), next(ids)
        token = new_token()
        ttl = data.ttl_hours or issuer.default_ttl
        expires_at = self._expiry.get(ttl) or self._expiry.setdefault(ttl, now + timedelta(hours=ttl))
        email = identifier if looks_like_email(identifier) else data.notification_email
        payload: dict[str, Any] = {"invite_id": invite_id, "link": issuer.seal(token), "inviter": issuer.inviter}
        code_hash = None
        if issuer.with_code:
            code = new_invite_code()
            code_hash = keyed_hash(issuer.secret, code)
            payload["code"] = issuer.seal(code)
        provisioning = _NO_PROVISIONING
        if issuer.provisions.get(data.provider, False):
            provisioning = _PROVISIONING_PENDING
            self.jobs.append(job_row(id=job_id, kind=invites.PROVISION_JOB, payload=payload, org_id=issuer.org_id,
                                     dedupe_key=f"provision:{invite_id}", max_attempts=issuer.max_attempts,
                                     run_after=now, now=now))
        elif data.send_email:
            self.jobs.append(job_row(id=job_id, kind=invites.SEND_EMAIL_JOB, payload=payload, org_id=issuer.org_id,
                                     dedupe_key=None, max_attempts=issuer.max_attempts, run_after=now, now=now))
        # The rows, event, audit and job of a single invite (services.invites.insert), from the same builders.
        member, invite = new_invitation(
            member_id=member_id, invite_id=invite_id, org_id=issuer.org_id, identifier=identifier,
            key=prepared.key, email=email, notification_email=data.notification_email, name=data.name,
            role=prepared.role, provider=data.provider, attributes=data.attributes,
            tenant_id=data.tenant_id, hosted_domain=data.hosted_domain, keycloak_idp=data.keycloak_idp,
            ttl_hours=ttl, expires_at=expires_at, created_by=issuer.created_by, send_email=data.send_email,
            code_hash=code_hash, provisioning_state=provisioning, now=now,
            inviter=data.inviter.model_dump() if data.inviter is not None else None, locale=data.locale)
        self.members.append(member)
        self.invites.append(invite)
        self.links.append({"token_hash": token_hash(token), "invite_id": invite_id, "created_at": now})
        self.events.append(event_row(event_id=event_id_of(next(ids)), org_id=issuer.org_id, org_slug=issuer.slug,
                                     type_="invite.created", sequence=member["event_seq"], member=member,
                                     invite=invite, now=now, data={}))
        self.audits.append(invites.created_audit(issuer.actor, invite, id=audit_id, at=now))
        return member, invite

    def write(self, connection: Connection) -> None:
        """Insert every row built so far, one insert (COPY on PostgreSQL) per table, in the connection's
        transaction."""
        for table, table_rows in ((MEMBERS, self.members), (INVITES, self.invites), (LINKS, self.links),
                                  (JOBS, self.jobs), (EVENTS, self.events), (AUDIT, self.audits)):
            insert_rows(connection, table, table_rows)


_NO_PROVISIONING, _PROVISIONING_PENDING = ProvisioningState.NONE.value, ProvisioningState.PENDING.value
