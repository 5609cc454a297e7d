"""Organizations, API keys and the audit trail."""

from __future__ import annotations

from flask import request

from idp_bridge.errors import Forbidden, lazy_gettext
from idp_bridge.inputs import ApiKeyCreate, OrgCreate, OrgUpdate, parse
from idp_bridge.permissions import AUDIT_READ, ORGS_MANAGE
from idp_bridge.schemas import (
    ApiKeyList,
    AuditEventList,
    IssuedApiKeyOut,
    OrgOut,
    api_key_out,
    audit_out,
    org_out,
)
from idp_bridge.services import api_keys, audit_trail, invites, orgs
from idp_bridge.web.api import Call, Query, operation
from idp_bridge.web.api.params import CURSOR, LIMIT, page_args


@operation("POST", "/orgs", summary="Create an organization", tag="orgs", permission=ORGS_MANAGE,
           platform_only=True, body=OrgCreate, response=OrgOut, status=201, errors=(409, 422))
def create_org(call: Call) -> OrgOut:
    org = orgs.create(call.session, call.bridge, call.actor, parse(OrgCreate, call.body))
    return org_out(org, 0)


@operation("GET", "/orgs/{org}", summary="Read an organization's settings", tag="orgs", permission=None,
           response=OrgOut)
def get_org(call: Call) -> OrgOut:
    org = call.must_org()
    return org_out(org, invites.seats_used(call.session, org))


@operation("PATCH", "/orgs/{org}", summary="Change an organization's settings", tag="orgs",
           permission=ORGS_MANAGE, body=OrgUpdate, response=OrgOut, errors=(422,))
def update_org(call: Call) -> OrgOut:
    org = orgs.update(call.session, call.bridge, call.actor, call.must_org(), parse(OrgUpdate, call.body))
    return org_out(org, invites.seats_used(call.session, org))


@operation("POST", "/orgs/{org}/api-keys", summary="Create an API key for the organization (shown once)",
           tag="api-keys", permission=ORGS_MANAGE, body=ApiKeyCreate, response=IssuedApiKeyOut, status=201,
           errors=(422,))
def create_api_key(call: Call) -> IssuedApiKeyOut:
    data = parse(ApiKeyCreate, call.body)
    if data.platform and not call.principal.platform:
        raise Forbidden(lazy_gettext("only a platform-wide key can create platform-wide keys"))
    org = None if data.platform else call.must_org()
    key, secret = api_keys.create(call.session, call.actor, org=org, permissions=data.permissions, name=data.name,
                                  grantor=call.principal)
    return IssuedApiKeyOut(**api_key_out(key, org.slug if org else None).model_dump(), key=secret)


@operation("GET", "/orgs/{org}/api-keys", summary="List the organization's API keys", tag="api-keys",
           permission=ORGS_MANAGE, response=ApiKeyList)
def list_api_keys(call: Call) -> ApiKeyList:
    org = call.must_org()
    return ApiKeyList(items=[api_key_out(k, org.slug) for k in api_keys.list_for(call.session, org)],
                      next_cursor=None)


@operation("POST", "/orgs/{org}/api-keys/{key_id}/rotate", summary="Rotate an API key: new key, old one dead",
           tag="api-keys", permission=ORGS_MANAGE, response=IssuedApiKeyOut, status=201)
def rotate_api_key(call: Call, key_id: str) -> IssuedApiKeyOut:
    org = call.must_org()
    key, secret = api_keys.rotate(call.session, call.actor, org, key_id, caller=call.principal)
    return IssuedApiKeyOut(**api_key_out(key, org.slug).model_dump(), key=secret)


@operation("DELETE", "/orgs/{org}/api-keys/{key_id}", summary="Delete an API key", tag="api-keys",
           permission=ORGS_MANAGE, status=204)
def delete_api_key(call: Call, key_id: str) -> None:
    api_keys.delete(call.session, call.actor, call.must_org(), key_id, caller=call.principal)


@operation("GET", "/orgs/{org}/audit-events", summary="Read the audit trail, newest first", tag="audit",
           permission=AUDIT_READ, response=AuditEventList, query=[
               Query("action", {"type": "string"}, "Exact action, e.g. invite.created."),
               Query("actor", {"type": "string"}, "Exact actor, e.g. api_key:<id>."),
               Query("since", {"type": "string", "format": "date-time"}, "Only events at or after this time."),
               LIMIT, CURSOR])
def list_audit_events(call: Call) -> AuditEventList:
    page = audit_trail.search(call.session, call.must_org(), action=request.args.get("action"),
                              actor=request.args.get("actor"), since=request.args.get("since"),
                              **page_args())  # type: ignore[arg-type]
    return AuditEventList(items=[audit_out(e) for e in page.items], next_cursor=page.next_cursor)
