"""The console's join-by-domain pages: "Join requests", and the verified domains of Settings."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_babel import gettext, lazy_gettext

from idp_bridge.errors import BridgeError, ValidationFailed
from idp_bridge.permissions import ORGS_MANAGE, USERS_INVITE, USERS_READ
from idp_bridge.services import domains, joining
from idp_bridge.web.api import status_for
from idp_bridge.web.console import Page, org_page, see_other
from idp_bridge.web.console.pages import PAGE_SIZE, _query, settings_view
from idp_bridge.web.i18n import said

REQUEST_STATUSES = {"PENDING": lazy_gettext("Pending"), "APPROVED": lazy_gettext("Approved"),
                    "DECLINED": lazy_gettext("Declined")}
NOTICES = {
    "approved": lazy_gettext("The request was approved; the person is now an active member."),
    "declined": lazy_gettext("The request was declined."),
}


def _requests(page: Page, status: int = 200, *, error: BridgeError | None = None, notice: str = "") -> Response:
    chosen = request.args.get("status") or None
    try:
        found = joining.search_requests(page.session, page.org, status=chosen, limit=PAGE_SIZE,
                                        cursor=request.args.get("cursor") or None)
        items, next_cursor = found.items, found.next_cursor
    except ValidationFailed as exc:
        items, next_cursor, error, status = [], None, exc, 400
    labels = {n: p.label for n, p in page.bridge.providers.items()}
    return page.render("join_requests.html", status, requests=items, chosen_status=chosen, error=error,
                       statuses=REQUEST_STATUSES, labels=labels, notice=notice,
                       next_url=_query(status=chosen, cursor=next_cursor) if next_cursor else "")


@org_page("/join-requests", permission=USERS_READ)
def join_requests_page(page: Page) -> Response:
    """The org's join requests, newest first, with "Approve" and "Decline" for roles that may invite."""
    return _requests(page, notice=str(NOTICES.get(request.args.get("done", ""), "")))


@org_page("/join-requests/<request_id>/approve", permission=USERS_INVITE, methods=("POST",))
def join_request_approve(page: Page, request_id: str) -> Response:
    """Approve: the person becomes an ACTIVE member with the default role (the seat limit holds)."""
    _, error = page.attempt(lambda: joining.approve(page.session, page.bridge.settings, page.actor, page.org,
                                                    request_id))
    if error is not None:
        return _requests(page, status_for(error), error=error)
    return see_other(f"/console/{page.org.slug}/join-requests?done=approved")


@org_page("/join-requests/<request_id>/decline", permission=USERS_INVITE, methods=("GET", "POST"))
def join_request_decline(page: Page, request_id: str) -> Response:
    """Decline, after the confirmation step."""
    return page.confirmed(
        lambda: joining.get_request(page.session, page.org, request_id),
        lambda row, status, error: page.render("confirm_join_request.html", status, row=row,
                                               statuses=REQUEST_STATUSES, error=error),
        lambda _: joining.decline(page.session, page.actor, page.org, request_id),
        lambda _: see_other(f"/console/{page.org.slug}/join-requests?done=declined"))


@org_page("/settings/domains", permission=ORGS_MANAGE, methods=("POST",))
def domain_add(page: Page) -> Response:
    """Claim a domain: it is listed as pending with the TXT record to publish."""
    name = request.form.get("domain", "")
    row, error = page.attempt(lambda: domains.add(page.session, page.actor, page.org, name))
    if error is not None:
        return settings_view(page, status_for(error), domain_error=_first_problem(error), form={})
    return see_other(f"/console/{page.org.slug}/settings?done=domain_added#domain-{row.id}")


@org_page("/settings/domains/<domain_id>/verify", permission=ORGS_MANAGE, methods=("POST",))
def domain_verify(page: Page, domain_id: str) -> Response:
    """Look the TXT record up; on failure the problem is shown next to the domain and nothing changes."""
    try:
        row = domains.get(page.session, page.org, domain_id)
    except BridgeError as exc:
        return page.not_found(exc)
    try:
        challenge = domains.challenge_for(page.session, page.org, row.id)
    except BridgeError as exc:
        return settings_view(page, status_for(exc), domain_problems={row.id: exc.detail}, form={})
    # What was read so far is committed: no transaction, nor SQLite's write lock, is held while DNS answers.
    page.session.commit()
    finding = domains.look_up(page.bridge.txt_lookup, challenge)
    _, error = page.attempt(lambda: domains.record(page.session, page.actor, page.org, challenge, finding))
    if error is not None:
        return settings_view(page, status_for(error), domain_problems={row.id: error.detail}, form={})
    return see_other(f"/console/{page.org.slug}/settings?done=domain_verified#domain-{row.id}")


@org_page("/settings/domains/<domain_id>/remove", permission=ORGS_MANAGE, methods=("GET", "POST"))
def domain_remove(page: Page, domain_id: str) -> Response:
    """Remove a domain, after the confirmation step."""
    return page.confirmed(
        lambda: domains.get(page.session, page.org, domain_id),
        lambda row, status, error: page.render("confirm_domain.html", status, domain=row, error=error),
        lambda row: domains.delete(page.session, page.actor, page.org, row.id),
        lambda _: see_other(f"/console/{page.org.slug}/settings?done=domain_removed"))


def _first_problem(error: BridgeError) -> str:
    problems: dict[str, Any] = error.errors if isinstance(error, ValidationFailed) else {}
    found = problems.get("domain")
    return gettext("The domain %(problem)s.", problem=said(found[0])) if found else error.detail
