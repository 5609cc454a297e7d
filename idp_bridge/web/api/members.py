"""Member operations, including CSV export."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request, stream_with_context

from idp_bridge.errors import BridgeError, Forbidden, lazy_gettext
from idp_bridge.inputs import MemberBulk, MemberUpdate, parse
from idp_bridge.models import Member, MemberStatus, Organization
from idp_bridge.permissions import USERS_DELETE, USERS_EDIT, USERS_READ
from idp_bridge.schemas import BulkMemberResult, BulkMemberRow, MemberList, MemberOut, member_out
from idp_bridge.services import members
from idp_bridge.services.members import MEMBER_SORTS
from idp_bridge.web.api import Call, Query, operation, problem_from
from idp_bridge.web.api.params import CURSOR, LIMIT, PROVIDER, Q, page_args, sort_param, status_param


def _perms(call: Call) -> dict[str, list[str]]:
    return {name: role.permissions for name, role in call.bridge.settings.roles.items()}


def _out(call: Call, member: Member) -> MemberOut:
    return member_out(member, call.must_org().slug, _perms(call))


def _filters() -> dict[str, Any]:
    return {k: request.args.get(k) for k in ("status", "role", "provider", "q")}


def _wants_csv() -> bool:
    accept = request.accept_mimetypes
    return accept.best_match(["application/json", "text/csv"]) == "text/csv" and accept["text/csv"] > 0


def _csv_export(call: Call, org: Organization) -> Response:
    lines = members.export_csv(call.bridge.sessions, org, sort=request.args.get("sort"), **_filters())
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{org.slug}-members.csv"'})


@operation("GET", "/orgs/{org}/members", summary="List members (Accept: text/csv exports them all)",
           tag="members", permission=USERS_READ, response=MemberList,
           query=[status_param([s.value for s in MemberStatus]),
                  Query("role", {"type": "string"}, "Role name(s), comma-separated."), PROVIDER, Q,
                  *[sort_param(list(MEMBER_SORTS), "-created_at")], LIMIT, CURSOR],
           extra_responses={"text/csv": {"schema": {"type": "string"}}})
def list_members(call: Call) -> Any:
    org = call.must_org()
    if _wants_csv():
        return _csv_export(call, org)
    page = members.search(call.session, org, sort=request.args.get("sort"), **page_args(), **_filters())  # type: ignore[arg-type]
    return MemberList(items=[_out(call, m) for m in page.items], next_cursor=page.next_cursor)


@operation("GET", "/orgs/{org}/members/{member_id}", summary="Read a member", tag="members",
           permission=USERS_READ, response=MemberOut)
def get_member(call: Call, member_id: str) -> MemberOut:
    return _out(call, members.get(call.session, call.must_org(), member_id))


@operation("PATCH", "/orgs/{org}/members/{member_id}", summary="Change a member's role", tag="members",
           permission=USERS_EDIT, body=MemberUpdate, response=MemberOut, errors=(409, 422))
def update_member(call: Call, member_id: str) -> MemberOut:
    data = parse(MemberUpdate, call.body)
    return _out(call, members.change_role(call.session, call.bridge.settings, call.actor, call.must_org(), member_id,
                                          data.role))


@operation("POST", "/orgs/{org}/members/{member_id}/deactivate", summary="Deactivate an active member",
           tag="members", permission=USERS_EDIT, response=MemberOut, errors=(409,))
def deactivate_member(call: Call, member_id: str) -> MemberOut:
    return _out(call, members.deactivate(call.session, call.bridge.settings, call.actor, call.must_org(), member_id))


@operation("POST", "/orgs/{org}/members/{member_id}/reactivate", summary="Reactivate a deactivated member",
           tag="members", permission=USERS_EDIT, response=MemberOut, errors=(409,))
def reactivate_member(call: Call, member_id: str) -> MemberOut:
    return _out(call, members.reactivate(call.session, call.bridge.settings, call.actor, call.must_org(), member_id))


@operation("DELETE", "/orgs/{org}/members/{member_id}", summary="Remove a member", tag="members",
           permission=USERS_DELETE, response=MemberOut, errors=(409,))
def delete_member(call: Call, member_id: str) -> MemberOut:
    return _out(call, members.remove(call.session, call.bridge.settings, call.actor, call.must_org(), member_id))


@operation("POST", "/orgs/{org}/members/bulk", summary="Change role, remove, deactivate or reactivate many",
           tag="members", permission=USERS_EDIT, body=MemberBulk, response=BulkMemberResult, errors=(403, 422))
def bulk_members(call: Call) -> BulkMemberResult:
    data = parse(MemberBulk, call.body)
    if data.action == "remove" and not call.principal.may(USERS_DELETE):
        raise Forbidden(lazy_gettext("this API key lacks the permission %(permission)s", permission=USERS_DELETE),
                        missing_permission=USERS_DELETE)
    results = members.bulk(call.session, call.bridge.settings, call.actor, call.must_org(), data)
    rows = []
    for r in results:
        error = None
        if r.error is not None:
            error = json_problem(r.error)
        rows.append(BulkMemberRow(id=r.id, status=r.status,  # type: ignore[arg-type]
                                  member=_out(call, r.member) if r.member else None, error=error))
    ok = sum(1 for r in results if r.status == "ok")
    return BulkMemberResult(summary={"ok": ok, "error": len(results) - ok}, results=rows)


def json_problem(error: BridgeError) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(problem_from(error).get_data())
    return body

