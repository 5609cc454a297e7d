"""The API's representations: every body it returns is built through one of these models, and the CLI's --json too."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from idp_bridge.domain.joining import CHALLENGE_TYPE, challenge_name
from idp_bridge.models import ApiKey, AuditEvent, Identity, Invite, JoinRequest, Member, Organization, OrgDomain
from idp_bridge.services.invites import effective_status


class Provisioning(BaseModel):
    state: Literal["pending", "done", "failed", "none"]
    attempts: int
    last_error: str | None


class InviterOut(BaseModel):
    name: str = ""
    email: str | None = None


class InviteOut(BaseModel):
    id: str
    org: str
    member_id: str
    identifier: str
    notification_email: str | None
    provider: str
    tenant_id: str | None
    hosted_domain: str | None
    keycloak_idp: str | None
    role: str
    name: str
    attributes: dict[str, Any]
    status: Literal["PENDING", "ACCEPTED", "EXPIRED", "REVOKED"]
    expires_at: datetime
    created_at: datetime
    created_by: str
    inviter: InviterOut | None = Field(default=None, description="Who invited, as pages and mail show it.")
    locale: str | None = Field(default=None, description="The invitee's language (BCP 47) for pages and mail.")
    send_count: int
    last_sent_at: datetime | None
    accepted_at: datetime | None
    revoked_at: datetime | None
    code_required: bool
    provisioning: Provisioning
    idp_user_id: str | None


class IssuedInviteOut(InviteOut):
    link: str = Field(description="The invite link; shown only in this response.")
    code: str | None = Field(default=None, description="The invite code when the org requires one; shown once.")
    warnings: list[str] = Field(default_factory=list,
                                description="Why nobody can redeem the invite yet (e.g. no provider is configured); "
                                            "it is created all the same.")


class IdentityOut(BaseModel):
    provider: str
    issuer: str
    subject: str
    tenant_id: str | None
    email: str | None
    email_verified: bool
    created_at: datetime
    last_login_at: datetime | None


class MemberOut(BaseModel):
    id: str
    org: str
    identifier: str
    email: str | None
    name: str
    role: str
    permissions: list[str]
    status: Literal["INVITED", "ACTIVE", "DEACTIVATED", "DELETED"]
    provider: str
    attributes: dict[str, Any]
    identities: list[IdentityOut]
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class BrandingOut(BaseModel):
    display_name: str | None = None
    logo_url: str | None = None
    accent_color: str | None = None
    mail_sender_name: str | None = None


class OrgOut(BaseModel):
    id: str
    slug: str
    name: str
    member_limit: int
    seats_used: int
    invite_ttl_hours: int
    require_invite_code: bool
    allowed_providers: list[str] | None
    redirect_url: str | None
    match: Literal["email", "link"]
    keycloak_email: Literal["keycloak", "ours", "both"]
    domain_join: Literal["off", "auto", "request"]
    scim_send_email: bool
    branding: BrandingOut | None = None
    keycloak_organization: str | None = None
    created_at: datetime
    updated_at: datetime


class Challenge(BaseModel):
    type: Literal["dns-txt"]
    name: str = Field(description="The DNS name of the TXT record: _idp-bridge-challenge.{domain}.")
    value: str = Field(description="The TXT record's value.")


class DomainOut(BaseModel):
    id: str
    org: str
    domain: str
    status: Literal["pending", "verified"]
    challenge: Challenge
    created_at: datetime
    verified_at: datetime | None


class DomainList(BaseModel):
    items: list[DomainOut]
    next_cursor: str | None


class JoinRequestOut(BaseModel):
    id: str
    org: str
    status: Literal["PENDING", "APPROVED", "DECLINED"]
    email: str
    name: str
    provider: str
    tenant_id: str | None
    member_id: str | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


class JoinRequestList(BaseModel):
    items: list[JoinRequestOut]
    next_cursor: str | None


class ApiKeyOut(BaseModel):
    id: str
    org: str | None
    name: str
    prefix: str
    permissions: list[str]
    created_at: datetime
    last_used_at: datetime | None


class IssuedApiKeyOut(ApiKeyOut):
    key: str = Field(description="The API key; shown only in this response.")


class AuditEventOut(BaseModel):
    id: str
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    at: datetime
    details: dict[str, Any]


class InviteList(BaseModel):
    items: list[InviteOut]
    next_cursor: str | None


class MemberList(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


class AuditEventList(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None


class BulkMemberRow(BaseModel):
    id: str
    status: Literal["ok", "error"]
    member: MemberOut | None = None
    error: dict[str, Any] | None = None


class BulkMemberResult(BaseModel):
    summary: dict[str, int]
    results: list[BulkMemberRow]


class BulkInviteSummary(BaseModel):
    created: int
    duplicate: int
    invalid: int


class BulkInviteRow(BaseModel):
    row: int = Field(description="1-based position in `invites`; for CSV the spreadsheet row (header = 1).")
    status: Literal["created", "duplicate", "invalid"] = Field(
        description="With dry_run, `created` means the row would be created.")
    id: str | None = Field(default=None, description="The new invite.")
    existing_id: str | None = Field(default=None, description="The pending invite or member already there.")
    errors: dict[str, list[str]] | None = Field(default=None, description="Column → messages.")


class BulkInviteResult(BaseModel):
    summary: BulkInviteSummary
    rows: list[BulkInviteRow]
    warnings: list[str] = Field(default_factory=list,
                                description="Why nobody can redeem the new invites yet (e.g. no provider is "
                                            "configured); they are created all the same.")


def invite_out(invite: Invite, org_slug: str) -> InviteOut:
    return InviteOut(
        id=invite.id, org=org_slug, member_id=invite.member_id, identifier=invite.identifier,
        notification_email=invite.notification_email, provider=invite.provider, tenant_id=invite.tenant_id,
        hosted_domain=invite.hosted_domain, keycloak_idp=invite.keycloak_idp, role=invite.role, name=invite.name,
        attributes=invite.attributes or {}, status=effective_status(invite),  # type: ignore[arg-type]
        expires_at=invite.expires_at, created_at=invite.created_at, created_by=invite.created_by,
        inviter=InviterOut(**invite.inviter) if invite.inviter else None, locale=invite.locale,
        send_count=invite.send_count, last_sent_at=invite.last_sent_at, accepted_at=invite.accepted_at,
        revoked_at=invite.revoked_at, code_required=invite.code_hash is not None,
        provisioning=Provisioning(state=invite.provisioning_state,  # type: ignore[arg-type]
                                  attempts=invite.provisioning_attempts, last_error=invite.provisioning_error),
        idp_user_id=invite.idp_user_id,
    )


def identity_out(identity: Identity) -> IdentityOut:
    return IdentityOut(provider=identity.provider, issuer=identity.issuer, subject=identity.subject,
                       tenant_id=identity.tenant_id, email=identity.email, email_verified=identity.email_verified,
                       created_at=identity.created_at, last_login_at=identity.last_login_at)


def member_out(member: Member, org_slug: str, role_permissions: dict[str, list[str]]) -> MemberOut:
    return MemberOut(
        id=member.id, org=org_slug, identifier=member.identifier, email=member.email, name=member.name,
        role=member.role, permissions=role_permissions.get(member.role, []),
        status=member.status, provider=member.provider,  # type: ignore[arg-type]
        attributes=member.attributes or {}, identities=[identity_out(i) for i in member.identities],
        last_login_at=member.last_login_at, created_at=member.created_at, updated_at=member.updated_at,
    )


def org_out(org: Organization, seats_used: int) -> OrgOut:
    return OrgOut(id=org.id, slug=org.slug, name=org.name, member_limit=org.member_limit, seats_used=seats_used,
                  invite_ttl_hours=org.invite_ttl_hours, require_invite_code=org.require_invite_code,
                  allowed_providers=org.allowed_providers, redirect_url=org.redirect_url,
                  match=org.match, keycloak_email=org.keycloak_email,  # type: ignore[arg-type]
                  domain_join=org.domain_join,  # type: ignore[arg-type]
                  scim_send_email=org.scim_send_email,
                  branding=BrandingOut(**org.branding) if org.branding else None,
                  keycloak_organization=org.keycloak_organization,
                  created_at=org.created_at, updated_at=org.updated_at)


def api_key_out(key: ApiKey, org_slug: str | None) -> ApiKeyOut:
    return ApiKeyOut(id=key.id, org=org_slug, name=key.name, prefix=key.prefix, permissions=list(key.permissions),
                     created_at=key.created_at, last_used_at=key.last_used_at)


def audit_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(id=event.id, actor=event.actor, action=event.action, target_type=event.target_type,
                         target_id=event.target_id, ip=event.ip, at=event.at, details=event.details or {})


def domain_out(row: OrgDomain, org_slug: str, value: str) -> DomainOut:
    return DomainOut(id=row.id, org=org_slug, domain=row.domain, status=row.status,  # type: ignore[arg-type]
                     challenge=Challenge(type=CHALLENGE_TYPE, name=challenge_name(row.domain), value=value),
                     created_at=row.created_at, verified_at=row.verified_at)


def join_request_out(row: JoinRequest, org_slug: str) -> JoinRequestOut:
    return JoinRequestOut(id=row.id, org=org_slug, status=row.status, email=row.email,  # type: ignore[arg-type]
                          name=row.name, provider=row.provider, tenant_id=row.tenant_id, member_id=row.member_id,
                          created_at=row.created_at, decided_at=row.decided_at, decided_by=row.decided_by)
