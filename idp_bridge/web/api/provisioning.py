"""Provisioning operations on invites."""

from __future__ import annotations

from idp_bridge import provisioning
from idp_bridge.permissions import USERS_INVITE
from idp_bridge.schemas import IssuedInviteOut
from idp_bridge.web.api import Call, operation
from idp_bridge.web.api.invites import issued_out


@operation("POST", "/orgs/{org}/invites/{invite_id}/retry-provisioning",
           summary="Provision a failed invite again (it gets a new link; the old link stops working)",
           tag="invites", permission=USERS_INVITE, response=IssuedInviteOut, errors=(409,))
def retry_provisioning(call: Call, invite_id: str) -> IssuedInviteOut:
    org = call.must_org()
    return issued_out(provisioning.retry(call.session, call.bridge, call.actor, org, invite_id), org.slug)
