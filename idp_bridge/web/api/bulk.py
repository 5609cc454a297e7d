"""Bulk invites: a JSON list or a CSV file, previewed with dry_run or written."""

from __future__ import annotations

from flask import Response, request

from idp_bridge.errors import ValidationFailed, lazy_gettext
from idp_bridge.inputs import BulkInviteBody
from idp_bridge.permissions import USERS_INVITE
from idp_bridge.schemas import BulkInviteResult, BulkInviteRow, BulkInviteSummary
from idp_bridge.services import bulk
from idp_bridge.web.api import Call, Query, operation

DRY_RUN = Query("dry_run", {"type": "boolean", "default": False},
                "Check every row and answer the preview; nothing is written.")
ATOMIC = Query("atomic", {"type": "boolean", "default": False},
               "All or nothing: any invalid row refuses the whole batch (422). Duplicates are not failures.")
ROLE = Query("role", {"type": "string"}, "Role for rows that name none (CSV, or a plain list of identifiers).")
CSV_BODY = {"schema": {"type": "string",
                       "description": "UTF-8 CSV with a header row: identifier or email, name, role, provider, "
                                      "tenant_id, hosted_domain, notification_email, locale; any other column "
                                      "becomes "
                                      "an attribute. `,` `;` or tab separated. At most 10,000 rows."}}


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").strip().lower()
    if raw not in ("true", "1", "yes", "false", "0", "no", ""):
        raise ValidationFailed({name: [lazy_gettext("must be true or false")]})
    return raw in ("true", "1", "yes")


def result_of(outcome: bulk.ImportReport) -> BulkInviteResult:
    """The SPEC §6 bulk answer."""
    return BulkInviteResult(
        summary=BulkInviteSummary(**outcome.summary()),
        rows=[BulkInviteRow(row=r.row, status=r.status, id=r.id, existing_id=r.existing_id,  # type: ignore[arg-type]
                            errors=r.errors) for r in outcome.rows],
        warnings=outcome.warnings)


@operation("POST", "/orgs/{org}/invites/bulk", summary="Invite many people from a JSON list or a CSV file",
           tag="invites", permission=USERS_INVITE, body=BulkInviteBody, response=BulkInviteResult,
           query=[DRY_RUN, ATOMIC, ROLE], errors=(400, 409, 413, 415, 422),
           request_content={"application/json": {}, "text/csv": CSV_BODY})
def bulk_invite(call: Call) -> Response:
    org = call.must_org()
    upload = bulk.read_upload(call.body, request.args.get("role") or None)
    outcome = bulk.import_invites(call.session, call.bridge, call.actor, org, upload.rows,
                                  defaults=upload.defaults, column_of=upload.column_of, dry_run=_flag("dry_run"),
                                  atomic=_flag("atomic"))
    return Response(result_of(outcome).model_dump_json(exclude_none=True), mimetype="application/json")
