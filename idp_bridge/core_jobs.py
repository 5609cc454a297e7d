"""The core's job kinds: mailing invitations and sweeping expired invites."""

from __future__ import annotations

from email.utils import formataddr, parseaddr
from typing import Any

from sqlalchemy.orm import Session

from idp_bridge import audit, locales
from idp_bridge.domain.providers import ANY, InviteTarget, LoginProvider
from idp_bridge.jobs import PermanentFailure, Recorder
from idp_bridge.mail import stable_message_id
from idp_bridge.models import Invite, InviteStatus, Organization
from idp_bridge.services import console, invites, joining, orgs, redeem
from idp_bridge.services.ports import Mailing, WithProviders, WithSessions
from idp_bridge.store.db import transaction
from idp_bridge.worker import JobKind, JobView

SEALED_KEYS = ("link", "code")


def invite_email_context(bridge: WithProviders, org: Organization, invite: Invite, link: str, code: str | None,
                         inviter: str, language: str = locales.DEFAULT) -> dict[str, Any]:
    """Everything the invitation templates show, in `language`."""
    words = locales.translations(language)
    provider = bridge.provider(invite.provider) if invite.provider != ANY else None
    target = invites.target_of(invite, org, link)
    look = orgs.look_of(bridge.settings, org)
    return {
        "org_name": look.display_name,
        "accent_color": look.accent_color or "#1f5fd1",
        "logo_url": look.logo_url,
        "inviter": invites.inviter_text(invite, org, inviter,
                                        unnamed=words.gettext("An admin of %(org)s") % {"org": org.name}),
        "role": invite.role.replace("_", " ").title(),
        "name": invite.name,
        "link": link,
        "code": code,
        "expires": locales.long_when(invite.expires_at, language),
        "account_hint": _described(provider, target, language),
        "support_contact": bridge.settings.support_contact,
    }


def _described(provider: LoginProvider | None, target: InviteTarget, language: str) -> str:
    """The provider's words for the account the invite needs, in the mail's language."""
    if provider is None:
        return ""
    with locales.speaking(language):
        return provider.account_description(target)


def sender_of(deps: WithProviders, org: Organization) -> str:
    """The From header: the configured address, with the org's mail sender name when its branding has one."""
    mail_from = deps.settings.mail_from
    name = orgs.look_of(deps.settings, org).mail_sender_name
    return formataddr((name, parseaddr(mail_from)[1])) if name else mail_from


def send_invite_email(bridge: Mailing, job: JobView) -> Recorder | None:
    """Mail the invitation with the link sealed into the job; skip invites that are no longer pending."""
    if "link" not in job.payload:
        raise PermanentFailure("job has no link (already sent, or wiped)")
    link_token = bridge.unseal(job.payload["link"])
    code = bridge.unseal(job.payload["code"]) if job.payload.get("code") else None
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, job.payload["invite_id"])
        if invite is None or invites.effective_status(invite) != InviteStatus.PENDING:
            return None
        if invites.by_token(session, link_token).superseded:
            return None  # a resend issued a newer link; its own job mails that one
        org = session.get(Organization, invite.org_id)
        assert org is not None
        to = invite.notification_email or invite.identifier
        # The invite's language, or English (the invitee's browser is not there to ask).
        language = locales.language_of(invite.locale)
        context = invite_email_context(bridge, org, invite, bridge.link(link_token), code,
                                       str(job.payload.get("inviter", "")), language)
        subject = locales.translations(language).gettext("You're invited to join %(org)s") % {
            "org": context["org_name"]}
        # One job mails one link: a run that dies after the server's 250 but before the job is marked done sends
        # again with the same Message-ID, while a resend (a new link, so a new job) gets a new one.
        message = bridge.renderer.message("invite", sender=sender_of(bridge, org),
                                          to=to, subject=subject, context=context, language=language,
                                          message_id=stable_message_id(f"invite.{job.id}", bridge.settings.mail_from))
        invite_id, org_id = invite.id, org.id
    bridge.mail.send(message)

    def record(session: Session) -> None:
        # Written with the job's completion, not in a transaction of its own.
        audit.record(session, audit.WORKER, "invite.email_sent", org_id=org_id, target_type="invite",
                     target_id=invite_id, details={"to": to})

    return record


def sweep_expired(bridge: WithSessions) -> int:
    """Mark every invite past its expiry EXPIRED and emit invite.expired, in bounded batches."""
    total = 0
    for _ in range(100):
        with transaction(bridge.sessions) as session:
            done = invites.expire_due(session, audit.WORKER, limit=500)
        total += done
        if done < 500:
            break
    with transaction(bridge.sessions) as session:
        # Login states live minutes; a day-old one is only clutter (it can no longer be used anyway).
        redeem.purge_login_states(session)
        joining.purge_logins(session)
        console.purge_sessions(session)
    return total


def core_kinds() -> dict[str, JobKind]:
    """Job kinds the core itself runs."""
    return {
        invites.SEND_EMAIL_JOB: JobKind(run=send_invite_email, wipe=SEALED_KEYS,
                                        rate=lambda b: b.settings.email_rate_per_second),
    }


