"""The console's org pages: Members (with per-row and bulk actions), Invite and Invites, Import, Audit log,
Settings and webhooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Response, request
from flask_babel import gettext, lazy_gettext
from pydantic import ValidationError

from idp_bridge import csvio, provisioning
from idp_bridge.domain.joining import challenge_name
from idp_bridge.errors import BridgeError, ValidationFailed
from idp_bridge.events import EVENT_TYPES
from idp_bridge.inputs import Branding, InviteInput, Inviter, MemberBulk, OrgUpdate, message_of
from idp_bridge.models import Invite, Member
from idp_bridge.permissions import AUDIT_READ, ORGS_MANAGE, USERS_DELETE, USERS_EDIT, USERS_INVITE, WEBHOOKS_MANAGE
from idp_bridge.services import api_keys, audit_trail, bulk, domains, invites, members, orgs, webhooks
from idp_bridge.web.api import status_for
from idp_bridge.web.console import Page, field_errors, forbidden, org_page, see_other, stream_csv
from idp_bridge.web.i18n import said

PAGE_SIZE = 25
# The Invite form's "Language" choices, each named in its own language ("Default": the invitee's browser decides).
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
MEMBER_STATUSES = {"INVITED": lazy_gettext("Invited"), "ACTIVE": lazy_gettext("Active"),
                   "DEACTIVATED": lazy_gettext("Deactivated")}
INVITE_STATUSES = {"PENDING": lazy_gettext("Pending"), "ACCEPTED": lazy_gettext("Accepted"),
                   "EXPIRED": lazy_gettext("Expired"), "REVOKED": lazy_gettext("Revoked")}
# Columns the Members table sorts by: the heading and the service's sort key.
MEMBER_COLUMNS = [(lazy_gettext("Name"), "name"), (lazy_gettext("Email"), "identifier"), (lazy_gettext("Role"), "role"),
                  (lazy_gettext("Status"), "status")]
NOTICES = {
    "role_changed": lazy_gettext("The role was changed."),
    "deactivated": lazy_gettext("The member was deactivated."),
    "reactivated": lazy_gettext("The member was reactivated."),
    "removed": lazy_gettext("The member was removed."),
    "bulk_done": lazy_gettext("The selected members were updated."),
    "resent": lazy_gettext("The invitation was sent again."),
    "revoked": lazy_gettext("The invitation was revoked."),
    "retried": lazy_gettext("Provisioning was started again."),
}


def _member_filters() -> dict[str, Any]:
    args = request.args
    return {"q": args.get("q") or None, "status": args.get("status") or None, "role": args.get("role") or None,
            "provider": args.get("provider") or None}


def _query(**values: Any) -> str:
    kept = {k: v for k, v in values.items() if v}
    return "?" + urlencode(kept) if kept else ""


@org_page("/members")
def members_page(page: Page) -> Response:
    """The members table: search, filters, sort, paging, seat usage, and the controls the role may use."""
    error: BridgeError | None = None
    status = 200
    filters = _member_filters()
    sort = request.args.get("sort") or "name"
    try:
        found = members.search(page.session, page.org, sort=sort, limit=PAGE_SIZE,
                               cursor=request.args.get("cursor") or None, **filters)
        items, next_cursor = found.items, found.next_cursor
    except ValidationFailed as exc:
        items, next_cursor, error, status = [], None, exc, 400
    b = page.bridge
    next_url = _query(**filters, sort=sort, cursor=next_cursor) if next_cursor else ""
    return page.render("members.html", status, members=items, filters=filters, sort=sort, error=error,
                       seats=invites.seats_used(page.session, page.org), statuses=MEMBER_STATUSES,
                       roles=b.settings.role_names(), providers=[(n, p.label) for n, p in b.providers.items()],
                       labels={n: p.label for n, p in b.providers.items()}, columns=MEMBER_COLUMNS,
                       query=_query, next_url=next_url, notice=NOTICES.get(request.args.get("done", ""), ""),
                       export_url=f"/console/{page.org.slug}/members.csv" + _query(**filters, sort=sort))


@org_page("/members.csv")
def members_csv(page: Page) -> Response:
    """Every member matching the current filters, as the API's CSV export."""
    filters = _member_filters()
    try:
        lines = members.export_csv(page.bridge.sessions, page.org, sort=request.args.get("sort") or None,
                                   **filters)
    except ValidationFailed as exc:
        return page.render("message.html", 400, title=gettext("Export failed"), message=exc.detail)
    return stream_csv(lines, f"{page.org.slug}-members.csv")


def _member_action(action: str, permission: str, title: str,
                   run: Callable[[Page, str], Any]) -> None:
    """A per-row member action: GET shows the confirmation step, POST (with "Confirm") does it."""

    def view(page: Page, member_id: str) -> Response:
        return page.confirmed(
            lambda: members.get(page.session, page.org, member_id),
            lambda member, status, error: _confirm(page, action, title, member, error=error, status=status),
            lambda _: run(page, member_id),
            lambda _: see_other(f"/console/{page.org.slug}/members?done={_done(action)}"), ask=False)

    view.__name__ = f"member_{action}"
    org_page(f"/members/<member_id>/{action}", permission=permission, methods=("GET", "POST"))(view)


def _done(action: str) -> str:
    return {"role": "role_changed", "deactivate": "deactivated", "reactivate": "reactivated",
            "remove": "removed"}[action]


def _confirm(page: Page, action: str, title: str, member: Member, *, error: BridgeError | None = None,
             status: int = 200) -> Response:
    return page.render("confirm_member.html", status, action=action, title=title, member=member, error=error,
                       roles=page.bridge.settings.role_names(), statuses=MEMBER_STATUSES)


_member_action("role", USERS_EDIT, lazy_gettext("Change role"),
               lambda page, mid: members.change_role(page.session, page.bridge.settings, page.actor, page.org, mid,
                                                     request.form.get("role", "")))
_member_action("deactivate", USERS_EDIT, lazy_gettext("Deactivate"),
               lambda page, mid: members.deactivate(page.session, page.bridge.settings, page.actor, page.org, mid))
_member_action("reactivate", USERS_EDIT, lazy_gettext("Reactivate"),
               lambda page, mid: members.reactivate(page.session, page.bridge.settings, page.actor, page.org, mid))
_member_action("remove", USERS_DELETE, lazy_gettext("Remove"),
               lambda page, mid: members.remove(page.session, page.bridge.settings, page.actor, page.org, mid))

BULK_ACTIONS = {"change_role": (lazy_gettext("Change role"), USERS_EDIT),
                "deactivate": (lazy_gettext("Deactivate"), USERS_EDIT),
                "remove": (lazy_gettext("Remove"), USERS_DELETE)}


@org_page("/members/bulk", permission=USERS_EDIT, methods=("POST",))
def members_bulk(page: Page) -> Response:
    """The "Selected members" group: first a confirmation listing who is affected, then the change."""
    form = request.form
    action = form.get("action", "")
    ids = form.getlist("ids")
    if action not in BULK_ACTIONS:
        return page.render("message.html", 400, title=gettext("Unknown action"),
                           message=gettext("Choose an action for the selected members."))
    title, permission = BULK_ACTIONS[action]
    if not page.me.may(permission):
        return forbidden(page, permission)
    chosen = [m for m in (page.session.get(Member, i) for i in ids[:1000]) if m is not None and m.org_id == page.org.id]
    role = form.get("role") or None
    if not chosen:
        return page.render("message.html", 400, title=gettext("Nobody selected"),
                           message=gettext("Select at least one member, then choose the action again."))
    if form.get("confirmed") != "1":
        return page.render("confirm_bulk.html", action=action, title=title, chosen=chosen, role=role)
    try:
        data = MemberBulk(action=action, ids=[m.id for m in chosen], role=role)  # type: ignore[arg-type]
    except ValidationError:
        return page.render("confirm_bulk.html", 400, action=action, title=title, chosen=chosen, role=role,
                           error=gettext("Choose a new role."))
    results, error = page.attempt(lambda: members.bulk(page.session, page.bridge.settings, page.actor, page.org,
                                                       data))
    if error is not None:
        return page.render("confirm_bulk.html", status_for(error), action=action, title=title, chosen=chosen,
                           role=role, error=error.detail)
    # Each member succeeds or is refused on its own, as through the API; the refused are named with the reason.
    names = {m.id: m.email or m.identifier for m in chosen}
    refused = [(names.get(r.id, r.id), r.error.detail) for r in results if r.error is not None]
    if refused:
        return page.render("bulk_refused.html", 409, title=title, refused=refused,
                           done=len(results) - len(refused))
    return see_other(f"/console/{page.org.slug}/members?done=bulk_done")


@org_page("/invites")
def invites_page(page: Page) -> Response:
    """The invites table with its "Status" filter and the per-row actions."""
    status = request.args.get("status") or None
    error: BridgeError | None = None
    try:
        found = invites.search(page.session, page.org, status=status, limit=PAGE_SIZE,
                               cursor=request.args.get("cursor") or None)
        items, next_cursor = found.items, found.next_cursor
    except ValidationFailed as exc:
        items, next_cursor, error = [], None, exc
    labels = {n: p.label for n, p in page.bridge.providers.items()}
    return page.render("invites.html", 400 if error else 200, invites=items, chosen_status=status, error=error,
                       statuses=INVITE_STATUSES, effective=invites.effective_status, labels=labels,
                       next_url=_query(status=status, cursor=next_cursor) if next_cursor else "",
                       notice=NOTICES.get(request.args.get("done", ""), ""))


@org_page("/invites/new", permission=USERS_INVITE, methods=("GET", "POST"))
def invite_new(page: Page) -> Response:
    """Invite one or many people (one identifier a line); the links and codes are shown once, afterwards."""
    b = page.bridge
    form = request.form
    context: dict[str, Any] = {"roles": b.settings.role_names(), "default_role": b.settings.default_role(),
                               "providers": [(n, p.label) for n, p in b.providers.items()], "form": form,
                               "errors": {}, "error": None, "languages": LANGUAGES}
    if request.method == "GET":
        return page.render("invite_new.html", **context)
    identifiers = [line.strip() for line in form.get("identifiers", "").splitlines() if line.strip()]
    if not identifiers:
        context["errors"] = {"identifiers": [gettext("Enter at least one email address or username.")]}
        return page.render("invite_new.html", 422, **context)
    member = page.me.member
    inviter = Inviter(name=member.name, email=member.email or member.identifier)

    def issue() -> list[invites.IssuedInvite]:
        return [invites.create(page.session, b, page.actor, page.org, _invite_input(identifier, form, inviter))
                for identifier in identifiers]

    issued, error = page.attempt(issue)
    if error is not None:
        context.update(error=error, errors=field_errors(error))
        return page.render("invite_new.html", status_for(error), **context)
    return page.render("invite_done.html", issued=issued)


def _invite_input(identifier: str, form: Any, inviter: Inviter) -> InviteInput:
    try:
        return InviteInput(identifier=identifier, provider=form.get("provider") or "any",
                           tenant_id=form.get("tenant_id") or None, hosted_domain=form.get("hosted_domain") or None,
                           role=form.get("role") or None, name=form.get("name") or "",
                           notification_email=form.get("notification_email") or None,
                           send_email=form.get("send_email") == "1", inviter=inviter,
                           locale=form.get("locale") or None)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for item in exc.errors():
            field = str(item["loc"][0]) if item["loc"] else "identifiers"
            errors.setdefault("identifiers" if field == "identifier" else field, []).append(
                gettext("%(field)s: %(problem)s", field=identifier, problem=said(message_of(item))))
        raise ValidationFailed(errors) from None


def _invite_action(action: str, title: str, run: Callable[[Page, str], Any], *, confirm: bool) -> None:
    """A per-row invite action; destructive ones go through the confirmation step first."""

    def view(page: Page, invite_id: str) -> Response:
        return page.confirmed(
            lambda: invites.get(page.session, page.org, invite_id),
            lambda invite, status, error: _confirm_invite(page, action, title, invite, error=error, status=status),
            lambda _: run(page, invite_id), lambda result: _invite_done(page, action, result), ask=confirm)

    view.__name__ = f"invite_{action.replace('-', '_')}"
    org_page(f"/invites/<invite_id>/{action}", permission=USERS_INVITE, methods=("GET", "POST"))(view)


def _invite_done(page: Page, action: str, result: Any) -> Response:
    if isinstance(result, invites.IssuedInvite):
        return page.render("invite_done.html", issued=[result], again=True)
    return see_other(f"/console/{page.org.slug}/invites?done={ {'revoke': 'revoked'}.get(action, action)}")


def _confirm_invite(page: Page, action: str, title: str, invite: Invite, *, error: BridgeError | None = None,
                    status: int = 200) -> Response:
    return page.render("confirm_invite.html", status, action=action, title=title, invite=invite, error=error,
                       status_word=INVITE_STATUSES.get(invites.effective_status(invite), ""))


_invite_action("resend", lazy_gettext("Resend"),
               lambda page, iid: invites.resend(page.session, page.bridge, page.actor, page.org, iid), confirm=False)
_invite_action("revoke", lazy_gettext("Revoke"),
               lambda page, iid: invites.revoke(page.session, page.actor, page.org, iid), confirm=True)
_invite_action("retry-provisioning", lazy_gettext("Retry provisioning"),
               lambda page, iid: provisioning.retry(page.session, page.bridge, page.actor, page.org, iid),
               confirm=False)


@org_page("/audit", permission=AUDIT_READ)
def audit_page(page: Page) -> Response:
    """The org's audit trail, newest first, filtered by "Action", "Actor" and "Since" (a day, from 00:00 UTC)."""
    args = request.args
    filters = {"action": (args.get("action") or "").strip() or None, "actor": (args.get("actor") or "").strip() or None,
               "since": (args.get("since") or "").strip() or None}
    since = filters["since"]
    error: BridgeError | None = None
    try:
        found = audit_trail.search(page.session, page.org, action=filters["action"], actor=filters["actor"],
                                   since=f"{since}T00:00:00+00:00" if since and len(since) == 10 else since,
                                   limit=PAGE_SIZE, cursor=args.get("cursor") or None)
        items, next_cursor = found.items, found.next_cursor
    except ValidationFailed as exc:
        items, next_cursor, error = [], None, exc
    return page.render("audit.html", 400 if error else 200, events=items, filters=filters, error=error,
                       actors=audit_trail.shown_actors(page.session, items),
                       next_url=_query(**filters, cursor=next_cursor) if next_cursor else "")


@org_page("/import", permission=USERS_INVITE, methods=("GET", "POST"))
def import_page(page: Page) -> Response:
    """CSV import: "Preview" checks every row and writes nothing; "Confirm import" writes the new ones, then
    the results and "Download errors" (the rejected rows with their original columns plus `error`)."""
    if request.method == "GET":
        return page.render("import.html")
    confirmed = request.form.get("confirmed") == "1"
    upload = request.files.get("file")
    data = upload.read() if upload is not None and not confirmed else request.form.get("csv", "").encode()
    if not data.strip():
        return page.render("import.html", 422, error=gettext("Choose a CSV file to import."))
    try:
        header, records = csvio.read(csvio.decode(data), max_rows=bulk.MAX_ROWS)
        rows = list(records)
    except BridgeError as exc:
        return page.render("import.html", status_for(exc), error=exc.detail)
    raw = [bulk.RawRow(r.row, header.fields(r), header.problems(r)) for r in rows]
    report, error = page.attempt(lambda: bulk.import_invites(
        page.session, page.bridge, page.actor, page.org, raw, column_of=header.column_of, dry_run=not confirmed))
    if error is not None:
        return page.render("import.html", status_for(error), error=error.detail)
    identifiers = {r.row: str(header.fields(r).get("identifier") or "") for r in rows}
    by_number = {r.row: r for r in rows}
    failed = report.failed()
    # SPEC's "Download errors": the original columns plus `error`.
    errors_csv = "".join(csvio.error_rows(header, ((by_number[r.row], r.reason()) for r in failed),
                                          errors_column="error")) if failed else ""
    return page.render("import_report.html", report=report, identifiers=identifiers, summary=report.summary(),
                       csv=data.decode("utf-8-sig", errors="replace"), errors_csv=errors_csv)


@org_page("/import/errors", permission=USERS_INVITE, methods=("POST",))
def import_errors(page: Page) -> Response:
    """The rejected rows of the import just run, as CSV (posted back from the results page: nothing is kept)."""
    text = request.form.get("errors_csv", "")
    return stream_csv(iter([text]), f"{page.org.slug}-import-errors.csv")


BRANDING_FIELDS = ("display_name", "logo_url", "accent_color", "mail_sender_name")
# The kinds of actor the audit log names (services.audit_trail.ACTOR_KINDS), marked here for the catalog: the
# template translates the kind it is given.
ACTOR_KIND_NAMES = (lazy_gettext("Member"), lazy_gettext("API key"), lazy_gettext("Command line"),
                    lazy_gettext("Background job"), lazy_gettext("Invitee"), lazy_gettext("Identity provider"),
                    lazy_gettext("Anonymous"))
JOIN_POLICIES = {"off": lazy_gettext("Off"), "auto": lazy_gettext("Automatic"), "request": lazy_gettext("On request")}
SETTINGS_NOTICES = {
    "saved": lazy_gettext("The settings were saved."),
    "deleted": lazy_gettext("The API key was deleted."),
    "domain_added": lazy_gettext("The domain was added. Publish its TXT record, then choose Verify."),
    "domain_verified": lazy_gettext("The domain was verified."),
    "domain_removed": lazy_gettext("The domain was removed."),
}


@org_page("/settings", permission=ORGS_MANAGE, methods=("GET", "POST"))
def settings_page(page: Page) -> Response:
    """The org's settings (name, redirect URL, invite lifetime, invite code, providers) and its API keys."""
    org = page.org
    if request.method == "GET":
        return settings_view(page)
    form = request.form
    look = {key: form.get(key, "").strip() or None for key in BRANDING_FIELDS}
    try:
        branding = Branding(**look) if any(look.values()) else None
        data = OrgUpdate(name=form.get("name", ""), redirect_url=form.get("redirect_url") or None,
                         invite_ttl_hours=form.get("invite_ttl_hours") or None,  # type: ignore[arg-type]
                         require_invite_code=form.get("require_invite_code") == "1",
                         allowed_providers=form.getlist("allowed_providers") or None, branding=branding,
                         domain_join=form.get("domain_join") or None)  # type: ignore[arg-type]
    except ValidationError as exc:
        return settings_view(page, 422, errors={str(e["loc"][0]): [message_of(e)] for e in exc.errors() if e["loc"]})
    _, error = page.attempt(lambda: orgs.update(page.session, page.bridge, page.actor, org, data))
    if error is not None:
        return settings_view(page, status_for(error), errors=field_errors(error), error=error.detail)
    return see_other(f"/console/{org.slug}/settings?done=saved")


def settings_view(page: Page, status: int = 200, **context: Any) -> Response:
    context.setdefault("errors", {})
    context.setdefault("domain_problems", {})
    # The settings form shows what was posted to it; after another form of the page, the org's values.
    context.setdefault("form", request.form)
    return page.render("settings.html", status, keys=api_keys.list_for(page.session, page.org),
                       providers=[(n, p.label) for n, p in page.bridge.providers.items()],
                       grantable=sorted(page.me.permissions - {ORGS_MANAGE}),
                       domains=[(d, challenge_name(d.domain), domains.challenge_value(d))
                                for d in domains.list_for(page.session, page.org)],
                       join_policies=JOIN_POLICIES,
                       notice=str(SETTINGS_NOTICES.get(request.args.get("done", ""), "")), **context)


@org_page("/settings/api-keys", permission=ORGS_MANAGE, methods=("POST",))
def api_key_create(page: Page) -> Response:
    """Create an API key of the org, with at most the member's own permissions; the key is shown once."""
    form = request.form
    issued, error = page.attempt(lambda: api_keys.create(
        page.session, page.actor, org=page.org, permissions=form.getlist("permissions"),
        name=form.get("key_name", "").strip()[:200], grantor=page.me.grantor()))
    if error is not None:
        return settings_view(page, status_for(error), key_error=error.detail, form={})
    return page.render("api_key_shown.html", key=issued[0], secret=issued[1])


def _key_action(action: str, title: str, run: Callable[[Page, str], Any],
                shown: Callable[[Page, Any], Response]) -> None:
    """Rotate (a new secret, shown once) or delete (after "Confirm") one API key of the org."""

    def view(page: Page, key_id: str) -> Response:
        return page.confirmed(
            lambda: api_keys.get(page.session, page.org, key_id),
            lambda key, status, error: page.render("confirm_key.html", status, action=action, title=title, key=key,
                                                   error=error.detail if error else None),
            lambda _: run(page, key_id), lambda result: shown(page, result))

    view.__name__ = f"api_key_{action}"
    org_page(f"/settings/api-keys/<key_id>/{action}", permission=ORGS_MANAGE, methods=("POST",))(view)


_key_action("rotate", lazy_gettext("Rotate"),
            lambda page, kid: api_keys.rotate(page.session, page.actor, page.org, kid, caller=page.me.grantor()),
            lambda page, issued: page.render("api_key_shown.html", key=issued[0], secret=issued[1]))
_key_action("delete", lazy_gettext("Delete"),
            lambda page, kid: api_keys.delete(page.session, page.actor, page.org, kid, caller=page.me.grantor()),
            lambda page, _: see_other(f"/console/{page.org.slug}/settings?done=deleted"))


@org_page("/settings/webhooks", permission=WEBHOOKS_MANAGE, methods=("GET", "POST"))
def webhooks_page(page: Page) -> Response:
    """The org's webhook endpoints; a new one's signing secret is shown once."""
    if request.method == "GET":
        return _webhooks(page)
    form = request.form
    try:
        data = webhooks.EndpointInput(url=form.get("url", ""), description=form.get("description", ""),
                                      event_types=form.getlist("event_types"))
    except ValidationError as exc:
        return _webhooks(page, 422, errors={str(e["loc"][0]): [message_of(e)] for e in exc.errors() if e["loc"]})
    created, error = page.attempt(lambda: webhooks.create(page.session, page.actor, page.org, data,
                                                          page.bridge.settings.secret_key, page.bridge.destinations))
    if error is not None:
        return _webhooks(page, status_for(error), errors=field_errors(error), error=error.detail)
    return page.render("webhook_shown.html", endpoint=created[0], secret=created[1])


def _webhooks(page: Page, status: int = 200, **context: Any) -> Response:
    context.setdefault("errors", {})
    found = webhooks.listing(page.session, page.org, limit=200, cursor=None)
    return page.render("webhooks.html", status, endpoints=found.items, event_types=EVENT_TYPES, form=request.form,
                       notice={"enabled": gettext("The endpoint was enabled."),
                               "disabled": gettext("The endpoint was disabled."),
                               "deleted": gettext("The endpoint was deleted.")}.get(request.args.get("done", ""), ""),
                       **context)


@org_page("/settings/webhooks/<endpoint_id>/enabled", permission=WEBHOOKS_MANAGE, methods=("POST",))
def webhook_enabled(page: Page, endpoint_id: str) -> Response:
    """Enable or disable an endpoint."""
    enabled = request.form.get("enabled") == "1"
    _, error = page.attempt(lambda: webhooks.set_enabled(page.session, page.actor, page.org, endpoint_id, enabled))
    if error is not None:
        return _webhooks(page, status_for(error), error=error.detail)
    return see_other(f"/console/{page.org.slug}/settings/webhooks?done={'enabled' if enabled else 'disabled'}")


@org_page("/settings/webhooks/<endpoint_id>/delete", permission=WEBHOOKS_MANAGE, methods=("POST",))
def webhook_delete(page: Page, endpoint_id: str) -> Response:
    """Delete an endpoint after "Confirm"."""
    return page.confirmed(
        lambda: webhooks.get(page.session, page.org, endpoint_id),
        lambda endpoint, status, error: page.render("confirm_webhook.html", status, endpoint=endpoint,
                                                    error=error.detail if error else None),
        lambda _: webhooks.delete(page.session, page.actor, page.org, endpoint_id),
        lambda _: see_other(f"/console/{page.org.slug}/settings/webhooks?done=deleted"))


@org_page("/settings/webhooks/<endpoint_id>/deliveries", permission=WEBHOOKS_MANAGE)
def webhook_deliveries(page: Page, endpoint_id: str) -> Response:
    """An endpoint's delivery log, newest first, each with "Redeliver"."""
    try:
        endpoint = webhooks.get(page.session, page.org, endpoint_id)
        found = webhooks.deliveries(page.session, page.org, endpoint_id, limit=PAGE_SIZE,
                                    cursor=request.args.get("cursor") or None)
    except BridgeError as exc:
        return page.not_found(exc)
    return page.render("deliveries.html", endpoint=endpoint, deliveries=found.items, reason=webhooks.shown_reason,
                       next_url=_query(cursor=found.next_cursor) if found.next_cursor else "",
                       notice=gettext("The delivery was queued again.") if request.args.get("done") == "redelivered"
                       else "")


@org_page("/settings/webhooks/<endpoint_id>/deliveries/<delivery_id>/redeliver", permission=WEBHOOKS_MANAGE,
          methods=("POST",))
def webhook_redeliver(page: Page, endpoint_id: str, delivery_id: str) -> Response:
    """Send one delivery again now."""
    _, error = page.attempt(lambda: webhooks.redeliver(page.session, page.actor, page.org, endpoint_id,
                                                       delivery_id))
    if error is not None:
        return page.render("message.html", status_for(error), title=gettext("Not redelivered"), message=error.detail)
    return see_other(f"/console/{page.org.slug}/settings/webhooks/{endpoint_id}/deliveries?done=redelivered")
