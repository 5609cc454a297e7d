"""Invite operations."""

from __future__ import annotations

from flask import request

from idp_bridge.inputs import InviteInput, parse
from idp_bridge.models import InviteStatus
from idp_bridge.permissions import USERS_INVITE, USERS_READ
from idp_bridge.schemas import InviteList, InviteOut, IssuedInviteOut, invite_out
from idp_bridge.services import invites
from idp_bridge.services.invites import INVITE_SORTS, IssuedInvite
from idp_bridge.web.api import Call, operation
from idp_bridge.web.api.params import CURSOR, LIMIT, PROVIDER, Q, page_args, sort_param, status_param


def issued_out(issued: IssuedInvite, org_slug: str) -> IssuedInviteOut:
    return IssuedInviteOut(**invite_out(issued.invite, org_slug).model_dump(), link=issued.link, code=issued.code,
                           warnings=issued.warnings)


@operation("POST", "/orgs/{org}/invites", summary="Invite one person", tag="invites", permission=USERS_INVITE,
           body=InviteInput, response=IssuedInviteOut, status=201, errors=(409, 422))
def create_invite(call: Call) -> IssuedInviteOut:
    org = call.must_org()
    issued = invites.create(call.session, call.bridge, call.actor, org, parse(InviteInput, call.body))
    return issued_out(issued, org.slug)


@operation("GET", "/orgs/{org}/invites", summary="List invites", tag="invites", permission=USERS_READ,
           response=InviteList, query=[status_param([s.value for s in InviteStatus]), PROVIDER, Q,
                                       sort_param(list(INVITE_SORTS), "-created_at"), LIMIT, CURSOR])
def list_invites(call: Call) -> InviteList:
    org = call.must_org()
    page = invites.search(call.session, org, status=request.args.get("status"),
                          provider=request.args.get("provider"), q=request.args.get("q"),
                          sort=request.args.get("sort"), **page_args())  # type: ignore[arg-type]
    return InviteList(items=[invite_out(i, org.slug) for i in page.items], next_cursor=page.next_cursor)


@operation("GET", "/orgs/{org}/invites/{invite_id}", summary="Read an invite", tag="invites",
           permission=USERS_READ, response=InviteOut)
def get_invite(call: Call, invite_id: str) -> InviteOut:
    org = call.must_org()
    return invite_out(invites.get(call.session, org, invite_id), org.slug)


@operation("POST", "/orgs/{org}/invites/{invite_id}/resend",
           summary="Mail the invite again with a new link (the old link stops working)", tag="invites",
           permission=USERS_INVITE, response=IssuedInviteOut, errors=(409,))
def resend_invite(call: Call, invite_id: str) -> IssuedInviteOut:
    org = call.must_org()
    return issued_out(invites.resend(call.session, call.bridge, call.actor, org, invite_id), org.slug)


@operation("POST", "/orgs/{org}/invites/{invite_id}/revoke", summary="Revoke a pending invite", tag="invites",
           permission=USERS_INVITE, response=InviteOut, errors=(409,))
def revoke_invite(call: Call, invite_id: str) -> InviteOut:
    org = call.must_org()
    return invite_out(invites.revoke(call.session, call.actor, org, invite_id), org.slug)
