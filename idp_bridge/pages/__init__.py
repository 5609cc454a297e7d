"""Invitee pages: server-rendered HTML, no JavaScript, no external assets."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template

from idp_bridge.bridge import Bridge
from idp_bridge.db import read_only, transaction
from idp_bridge.idp import ANY
from idp_bridge.models import InviteStatus, Organization
from idp_bridge.services import invites

bp = Blueprint("pages", __name__, template_folder="templates")

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'",
}
# Expired, revoked, unknown and tampered links look the same from outside: one page, one status.
INVALID_STATUS = 404


def bridge() -> Bridge:
    b: Bridge = current_app.extensions["idp_bridge"]
    return b


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render an invitee page with the headers every invite page carries."""
    context.setdefault("product_name", bridge().settings.product_name)
    context.setdefault("support_contact", bridge().settings.support_contact)
    resp = Response(render_template(f"pages/{template}", **context), status=status, mimetype="text/html")
    resp.headers.update(SECURITY_HEADERS)
    return resp


def invalid_page() -> Response:
    return page("invalid.html", INVALID_STATUS)


@bp.get("/invite/<token>")
def landing(token: str) -> Response:
    """What the invite offers and which account it needs."""
    b = bridge()
    with read_only(), transaction(b.sessions) as session:
        found = invites.by_token(session, token)
        invite = found.invite
        if invite is None:
            return invalid_page()
        org = session.get(Organization, invite.org_id)
        assert org is not None
        status = invites.effective_status(invite)
        if found.superseded:
            if status == InviteStatus.PENDING:
                return page("superseded.html", 410, org=org)
            return invalid_page()
        if status == InviteStatus.ACCEPTED:
            return page("used.html", 410, org=org)
        if status != InviteStatus.PENDING:
            return invalid_page()
        provider = b.provider(invite.provider) if invite.provider != ANY else None
        target = invites.target_of(invite, org)
        account = provider.account_description(target) if provider else f"an account for {invite.identifier}"
        return page("landing.html", org=org, invite=invite, account=account,
                    role=invite.role.replace("_", " ").title(),
                    expires=invite.expires_at.strftime("%d %B %Y, %H:%M UTC"),
                    inviter=_inviter(invite.created_by, org))


def _inviter(created_by: str, org: Organization) -> str:
    if created_by.startswith(("api_key:", "cli", "worker")) or not created_by:
        return f"An admin of {org.name}"
    return created_by
