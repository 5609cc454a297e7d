"""Provisioning operations on invites."""

from __future__ import annotations

from idp_bridge import provisioning
from idp_bridge.api import Call, operation
from idp_bridge.api.invites import issued_out
from idp_bridge.api.schemas import IssuedInviteOut
from idp_bridge.permissions import USERS_INVITE


@operation("POST", "/orgs/{org}/invites/{invite_id}/retry-provisioning",
           summary="Provision a failed invite again (it gets a new link; the old link stops working)",
           tag="invites", permission=USERS_INVITE, response=IssuedInviteOut, errors=(409,))
def retry_provisioning(call: Call, invite_id: str) -> IssuedInviteOut:
    org = call.must_org()
    return issued_out(provisioning.retry(call.session, call.bridge, call.actor, org, invite_id), org.slug)
