"""Validated input shapes shared by the API, the CLI and bulk import."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeVar

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from idp_bridge import locales
from idp_bridge.errors import Message, ValidationFailed, lazy_gettext
from idp_bridge.identifiers import InvalidDomain, canonical_domain
from idp_bridge.jsontext import control_character

SLUG = re.compile(r"^[a-z0-9-]{2,63}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_ATTRIBUTES_BYTES = 16_384
M = TypeVar("M", bound="BaseModel")


# Plain ASCII addresses (no IDNA labels, letters-only TLD) whose stored form is just a lower-case domain:
# recognised by one regex, because email_validator costs ~100 µs an address and bulk imports check 10,000.
PLAIN_EMAIL = re.compile(r"^(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)@"
                         r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})$")


def _plain_email(value: str) -> str | None:
    """The stored form of a plain address, or None when the full check is needed."""
    match = PLAIN_EMAIL.match(value)
    if match is None or len(match["local"]) > 64 or len(value) > 254 or "--" in match["domain"]:
        return None
    domain = match["domain"].lower()
    if any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES):
        return None
    return f"{match['local']}@{domain}"


def normalize_email(value: str) -> str:
    """Validate email syntax (no DNS) and return the form it is stored in: the local part exactly as given
    (email_validator's NFC would turn a Kelvin sign into K), the domain as its lower-case Unicode name."""
    value = value.strip()
    plain = _plain_email(value)
    if plain is not None:
        return plain
    try:
        checked = validate_email(value, check_deliverability=False)
        canonical_domain(checked.domain)
    except (EmailNotValidError, InvalidDomain) as exc:
        raise ValueError(exc.args[0] if isinstance(exc, InvalidDomain) and exc.args else str(exc)) from exc
    return f"{value.rpartition('@')[0]}@{checked.domain}"


def looks_like_email(value: str) -> bool:
    return "@" in value


def message_of(err: ErrorDetails) -> str:
    """One pydantic error's message: a validator's message of ours stays one (the faces translate it), pydantic's
    own text is English."""
    cause = (err.get("ctx") or {}).get("error")
    ours = cause.args[0] if isinstance(cause, ValueError) and cause.args else None
    return ours if isinstance(ours, Message) else str(err["msg"]).removeprefix("Value error, ")


def errors_from(exc: ValidationError, prefix: str = "") -> dict[str, list[str]]:
    """Pydantic errors as field → messages."""
    out: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__") or "body"
        out.setdefault(prefix + loc, []).append(message_of(err))
    return out


def parse(model: type[M], data: Any) -> M:
    """Validate data into model or raise ValidationFailed with per-field messages."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": [lazy_gettext("must be a JSON object")]})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(errors_from(exc)) from exc


def single_line(value: str) -> str:
    """Refuse text with control characters or line separators: it ends up in mail headers and page titles."""
    found = control_character(value)
    if found is not None:
        raise ValueError(lazy_gettext("must not contain control characters or line breaks (found %(found)s)",
                                      found=found))
    return value


# Text that reaches a mail header (To, Subject) or a page title: one CR or LF there stops the org's mail.
OneLine = Annotated[str, AfterValidator(single_line),
                    Field(json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Name = Annotated[OneLine, Field(max_length=200)]


class Inviter(Strict):
    """Who invites, as the invitee will see it instead of "An admin of {org}"."""

    name: Name = ""
    email: OneLine | None = Field(default=None, max_length=320)

    @model_validator(mode="after")
    def _named(self) -> Inviter:
        if not self.name and not self.email:
            raise ValueError(lazy_gettext("give the inviter's name, email or both"))
        return self


class InviteInput(Strict):
    """One invitation as an admin describes it."""

    identifier: OneLine = Field(min_length=1, max_length=320,
                            validation_alias=AliasChoices("identifier", "email"),
                            description="The username the IdP will show; usually an email address.")
    notification_email: OneLine | None = Field(default=None, max_length=320,
                                               description="Where the invitation is mailed, if not the identifier.")
    provider: str = Field(default="any", max_length=64,
                          description="`any`, or the name of a configured provider.")
    tenant_id: str | None = Field(default=None, description="Entra tenant GUID (Entra providers only).")
    hosted_domain: str | None = Field(default=None, max_length=253,
                                      description="Google Workspace domain (Google providers only).")
    keycloak_idp: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                                     description="Keycloak identity-provider alias used as kc_idp_hint.")
    role: str | None = Field(default=None, max_length=64, description="A configured role; default role if omitted.")
    name: Name = ""
    attributes: dict[str, Any] = Field(default_factory=dict,
                                       description="Free JSON passed through to the host platform.")
    ttl_hours: int | None = Field(default=None, ge=1, le=720, description="Overrides the org's invite lifetime.")
    send_email: bool = Field(default=True, description="Mail the invitation (false: the host delivers the link).")
    inviter: Inviter | None = Field(default=None, description="Who invites (the person who clicked in the host); "
                                                              "pages and mail show it, not 'An admin of {org}'.")
    locale: str | None = Field(default=None, max_length=35,
                               description="The invitee's language, a BCP 47 tag (en, de, de-AT); pages and mail "
                                           "use it, falling back to English for a language not shipped.")

    @field_validator("notification_email")
    @classmethod
    def _notification_email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else None

    @field_validator("hosted_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = value.strip().lower()
        if not DOMAIN.match(value):
            raise ValueError(lazy_gettext("must be a domain name like example.com"))
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return locales.normalize_tag(value) if value else None

    @field_validator("attributes")
    @classmethod
    def _attributes_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, separators=(",", ":"))) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(lazy_gettext("must be at most %(most)s bytes of JSON", most=MAX_ATTRIBUTES_BYTES))
        return value


class Branding(Strict):
    """How the org looks on the console, the invitee pages and the invitation mail."""

    display_name: Name | None = None
    logo_url: OneLine | None = Field(default=None, max_length=2000, pattern=r"^https://[^\s\"'<>]+$",
                                     description="An https URL; shown only from hosts in branding_image_hosts.")
    accent_color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")
    mail_sender_name: Name | None = None


class OrgCreate(Strict):
    slug: str = Field(pattern=SLUG.pattern, description="Unique, [a-z0-9-]{2,63}.")
    name: OneLine = Field(min_length=1, max_length=200)
    member_limit: int = Field(default=10, ge=1, le=1_000_000)
    invite_ttl_hours: int = Field(default=336, ge=1, le=720)
    require_invite_code: bool = False
    allowed_providers: list[str] | None = None
    redirect_url: OneLine | None = Field(default=None, max_length=2000)
    match: Literal["email", "link"] = "email"
    keycloak_email: Literal["keycloak", "ours", "both"] = "keycloak"
    domain_join: Literal["off", "auto", "request"] = "off"
    scim_send_email: bool = Field(default=True, description="Mail an invitation to members a directory creates "
                                  "through SCIM.")
    branding: Branding | None = None
    keycloak_organization: OneLine | None = Field(
        default=None, min_length=1, max_length=255,
        description="A Keycloak organization (alias or id): ACTIVE members with a Keycloak identity are added to "
                    "it, removed when DELETED (providers with `organizations = true`).")


class OrgUpdate(Strict):
    name: OneLine | None = Field(default=None, min_length=1, max_length=200)
    member_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    invite_ttl_hours: int | None = Field(default=None, ge=1, le=720)
    require_invite_code: bool | None = None
    allowed_providers: list[str] | None = None
    redirect_url: OneLine | None = Field(default=None, max_length=2000)
    match: Literal["email", "link"] | None = None
    keycloak_email: Literal["keycloak", "ours", "both"] | None = None
    scim_send_email: bool | None = None
    domain_join: Literal["off", "auto", "request"] | None = None
    branding: Branding | None = None
    keycloak_organization: OneLine | None = Field(
        default=None, min_length=1, max_length=255,
        description="A Keycloak organization (alias or id): ACTIVE members with a Keycloak identity are added to "
                    "it, removed when DELETED (providers with `organizations = true`); null turns it off.")


class DomainCreate(Strict):
    domain: str = Field(min_length=1, max_length=1024, description="A domain name; stored as its IDNA A-label.")


class MemberUpdate(Strict):
    role: str = Field(min_length=1, max_length=64)


class MemberBulk(Strict):
    action: Literal["change_role", "remove", "deactivate", "reactivate"]
    ids: list[str] = Field(min_length=1, max_length=1000)
    role: str | None = Field(default=None, max_length=64)


class ApiKeyCreate(Strict):
    name: str = Field(default="", max_length=200)
    permissions: list[str] = Field(min_length=1)
    platform: bool = Field(default=False, description="Platform-wide (needs a platform key).")


class InviteDefaults(Strict):
    """Values every row of a bulk invite gets unless the row sets its own."""

    notification_email: OneLine | None = Field(default=None, max_length=320)
    provider: str | None = Field(default=None, max_length=64)
    tenant_id: str | None = None
    hosted_domain: str | None = Field(default=None, max_length=253)
    keycloak_idp: str | None = Field(default=None, max_length=100)
    role: str | None = Field(default=None, max_length=64)
    name: Name | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, description="Merged under each row's attributes.")
    ttl_hours: int | None = Field(default=None, ge=1, le=720)
    send_email: bool | None = None
    locale: str | None = Field(default=None, max_length=35)

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return locales.normalize_tag(value) if value else None


class BulkInviteBody(Strict):
    """Many invitations at once: full invite objects, or plain identifiers that all get `role`."""

    defaults: InviteDefaults = Field(default_factory=InviteDefaults)
    role: str | None = Field(default=None, max_length=64, description="Shorthand for defaults.role.")
    invites: list[InviteInput | str] = Field(
        default_factory=list, description="Each row an invite object or an identifier (usually an email).")
