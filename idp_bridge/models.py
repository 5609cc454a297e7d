"""SQLAlchemy 2.0 models: the whole persistent state of idp-bridge."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Re-exported: the models' status columns hold these values.
from idp_bridge.domain.states import SEAT_STATUSES as SEAT_STATUSES
from idp_bridge.domain.states import InviteStatus as InviteStatus
from idp_bridge.domain.states import MatchPolicy as MatchPolicy
from idp_bridge.domain.states import MemberStatus as MemberStatus
from idp_bridge.domain.states import ProvisioningState as ProvisioningState
from idp_bridge.store.ids import new_id
from idp_bridge.store.types import JSONType
from idp_bridge.store.types import UTCDateTime as UTCDateTime  # migrations name it as idp_bridge.models.UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[str]: JSONType}

    def assign(self, values: Mapping[str, Any]) -> None:
        """Take the column values a domain transition decided."""
        for key, value in values.items():
            setattr(self, key, value)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    member_limit: Mapped[int] = mapped_column(Integer, default=10)
    invite_ttl_hours: Mapped[int] = mapped_column(Integer, default=336)
    require_invite_code: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_providers: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    redirect_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    match: Mapped[str] = mapped_column(String(10), default=MatchPolicy.EMAIL.value)
    # Who emails a new Keycloak user: Keycloak's execute-actions mail, ours, or both.
    keycloak_email: Mapped[str] = mapped_column(String(10), default="keycloak")
    # Whether people with a verified address on a verified domain may join: off, auto, request.
    domain_join: Mapped[str] = mapped_column(String(10), default="off", server_default="off")
    # Whether members a directory creates through SCIM get our invitation mail.
    scim_send_email: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # {"display_name", "logo_url", "accent_color", "mail_sender_name"}: the console, invitee pages and mail.
    branding: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The Keycloak organization (alias or id) ACTIVE members with a Keycloak identity are added to.
    keycloak_organization: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OrgDomain(Base):
    """A domain an org claims, verified by a DNS TXT record; one org at most holds it verified."""

    __tablename__ = "org_domains"
    __table_args__ = (
        UniqueConstraint("org_id", "domain"),
        Index("uq_org_domains_verified_domain", "domain", unique=True,
              sqlite_where=text("status = 'verified'"), postgresql_where=text("status = 'verified'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    # The IDNA A-label in lower-case ASCII (identifiers.canonical_domain).
    domain: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    challenge: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    checked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class JoinRequest(Base):
    """Someone on a verified domain asking to join an org whose domain_join is `request`."""

    __tablename__ = "join_requests"
    __table_args__ = (
        Index("uq_join_requests_pending_identity", "org_id", "provider", "issuer", "subject", unique=True,
              sqlite_where=text("status = 'PENDING'"), postgresql_where=text("status = 'PENDING'")),
        Index("ix_join_requests_org_created", "org_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    provider: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    member_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JoinLogin(Base):
    """An OIDC login in flight from an org's join page: state, nonce and PKCE verifier bound to one browser."""

    __tablename__ = "join_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(100))
    code_verifier: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"),
                                               nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    permissions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)

    org: Mapped[Organization | None] = relationship(lazy="joined")


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        # One live membership per identifier and org; DELETED rows stay as history.
        Index("uq_members_live_identifier", "org_id", "identifier_key", unique=True,
              sqlite_where=text("status != 'DELETED'"), postgresql_where=text("status != 'DELETED'")),
        Index("ix_members_org_status_created", "org_id", "status", "created_at"),
        Index("ix_members_org_created", "org_id", "created_at", "id"),
        Index("ix_members_org_external_id", "org_id", "external_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(320))
    identifier_key: Mapped[str] = mapped_column(String(320))
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=MemberStatus.INVITED.value)
    provider: Mapped[str] = mapped_column(String(64), default="any")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The directory's own id for a member it provisioned through SCIM, and the SCIM attributes it last wrote
    # that have no column of their own (name parts, emails, phone numbers…), returned as they were written.
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    directory: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Who turned the member DEACTIVATED (admin, or an IdP event source); IdP re-enable undoes only its own.
    deactivated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_login_at: Mapped[datetime | None] = mapped_column(nullable=True)
    activated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    identities: Mapped[list[Identity]] = relationship(back_populates="member", lazy="selectin",
                                                      order_by="Identity.created_at")


class Invite(Base):
    __tablename__ = "invites"
    __table_args__ = (
        Index("uq_invites_pending_identifier", "org_id", "identifier_key", unique=True,
              sqlite_where=text("status = 'PENDING'"), postgresql_where=text("status = 'PENDING'")),
        Index("ix_invites_org_created", "org_id", "created_at", "id"),
        Index("ix_invites_status_expires", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    identifier: Mapped[str] = mapped_column(String(320))
    identifier_key: Mapped[str] = mapped_column(String(320))
    notification_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    provider: Mapped[str] = mapped_column(String(64), default="any")
    tenant_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    hosted_domain: Mapped[str | None] = mapped_column(String(253), nullable=True)
    keycloak_idp: Mapped[str | None] = mapped_column(String(100), nullable=True)
    role: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=InviteStatus.PENDING.value)
    expires_at: Mapped[datetime] = mapped_column()
    ttl_hours: Mapped[int] = mapped_column(Integer, default=336)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    # The person who invited, as the host or the console names them ({"name", "email"}); shown on pages and mail.
    inviter: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The invitee's language (a BCP 47 tag) for the pages and the mail; None: the browser's, else English.
    locale: Mapped[str | None] = mapped_column(String(35), nullable=True)
    send_email: Mapped[bool] = mapped_column(Boolean, default=True)
    send_count: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_failures: Mapped[int] = mapped_column(Integer, default=0)
    accepted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    provisioning_state: Mapped[str] = mapped_column(String(16), default=ProvisioningState.NONE.value)
    provisioning_attempts: Mapped[int] = mapped_column(Integer, default=0)
    provisioning_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The IdP account bound at provisioning time (Keycloak user id, Entra object id).
    idp_user_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    idp_user_created: Mapped[bool] = mapped_column(Boolean, default=False)
    idp_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    member: Mapped[Member] = relationship(lazy="joined")


class InviteLink(Base):
    """One link ever issued for an invite; resend supersedes the previous one."""

    __tablename__ = "invite_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    invite_id: Mapped[str] = mapped_column(ForeignKey("invites.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("org_id", "provider", "issuer", "subject"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(nullable=True)

    member: Mapped[Member] = relationship(back_populates="identities")


class DirectoryGroup(Base):
    """A group a directory pushed through SCIM; `[scim.group_roles]` maps its name to a role."""

    __tablename__ = "directory_groups"
    __table_args__ = (UniqueConstraint("org_id", "display_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(256))
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DirectoryGroupMember(Base):
    __tablename__ = "directory_group_members"

    group_id: Mapped[str] = mapped_column(ForeignKey("directory_groups.id", ondelete="CASCADE"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True,
                                           index=True)
    # The member's `display` as the directory sent it (RFC 7643 §4.2), returned as given.
    display: Mapped[str | None] = mapped_column(String(256), nullable=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_at", "org_id", "at", "id"), Index("ix_audit_events_at", "at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Job(Base):
    """A unit of background work in the outbox, written in the transaction that caused it."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "status", "run_after"),
                      Index("ix_jobs_finished", "status", "finished_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    org_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # At most one live job per key (e.g. one provisioning job per invite).
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Event(Base):
    """An outbound event for the host platform, written with the state change it reports."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_org_created", "org_id", "created_at"),
                      Index("ix_events_undispatched", "dispatched", "created_at"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    invite_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Sealed (security.seal) with the secret key; legacy rows written before revision 0003 hold "whsec_…".
    secret: Mapped[str] = mapped_column(String(500))
    previous_secret: Mapped[str | None] = mapped_column(String(500), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    failing_since: Mapped[datetime | None] = mapped_column(nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),
                      Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_finished", "status", "last_attempt_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    succeeded_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundEvent(Base):
    """A verified IdP event, stored raw before it is processed."""

    __tablename__ = "inbound_events"
    __table_args__ = (UniqueConstraint("source", "event_id"), Index("ix_inbound_events_status", "status"),
                      Index("ix_inbound_events_status_received", "status", "received_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(50))
    event_id: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WebhookAttempt(Base):
    """One HTTP attempt of a webhook delivery: the per-endpoint delivery log."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_at", "endpoint_id", "at", "id"),
                      Index("ix_webhook_attempts_at", "at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[str] = mapped_column(String(36))
    event_id: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginState(Base):
    """An OIDC login in flight: state, nonce and PKCE verifier bound to one browser and one invite (or, for a
    console sign-in, to no invite)."""

    __tablename__ = "login_states"

    # SHA-256 of the random `state`; the browser binding is the hash of a cookie only that browser holds.
    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    invite_id: Mapped[str | None] = mapped_column(ForeignKey("invites.id", ondelete="CASCADE"), index=True,
                                                  nullable=True)
    # The invite link, sealed: "use another account" and "try again" pages need to point back at it.
    link_sealed: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(100))
    code_verifier: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ConsoleSession(Base):
    """A person signed in to the admin console: the IdP identity they proved, and when the session ends."""

    __tablename__ = "console_sessions"

    # SHA-256 of the random cookie value; the cookie alone opens the session.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    account: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateLimitCounter(Base):
    """One fixed-window rate-limit counter, shared by every process of the deployment (`database://` storage)."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    # Seconds since the epoch: compared with each process's wall clock, written in one statement with the count.
    expires_at: Mapped[float] = mapped_column(Float)


class PaceState(Base):
    """Where one shared pace stands (`database://` paces, see idp_bridge.pacing): the next free slot's start."""

    __tablename__ = "paces"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Seconds since the epoch, compared with each worker's wall clock like the rate-limit counters' expiries.
    next_at: Mapped[float] = mapped_column(Float)
