"""API keys: issued once, stored hashed, scoped to an org or the platform; rotation kills the old key."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Update, bindparam, select, update
from sqlalchemy.orm import Session

from idp_bridge import audit
from idp_bridge.audit import Actor
from idp_bridge.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed, lazy_gettext
from idp_bridge.models import ApiKey, Organization, utcnow
from idp_bridge.permissions import ALL_PERMISSIONS, ORGS_MANAGE
from idp_bridge.security import API_KEY_PREFIX, new_api_key, same, token_hash
from idp_bridge.store.compiled import compiled
from idp_bridge.store.sql import table_of


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid API key."""

    key_id: str
    org_id: str | None
    permissions: frozenset[str]

    @property
    def platform(self) -> bool:
        return self.org_id is None

    def actor(self, ip: str | None = None) -> Actor:
        return Actor("api_key", self.key_id, ip)

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def can_reach(self, org: Organization) -> bool:
        return self.platform or self.org_id == org.id


def _check_permissions(permissions: list[str]) -> list[str]:
    unknown = sorted(set(permissions) - ALL_PERMISSIONS)
    if unknown:
        raise ValidationFailed({"permissions": [lazy_gettext("unknown permission %(permission)s", permission=p)
                                                 for p in unknown]})
    return sorted(set(permissions))


def create(session: Session, actor: Actor, *, org: Organization | None, permissions: list[str],
           name: str = "", grantor: Principal | None = None) -> tuple[ApiKey, str]:
    """Issue a key; returns the row and the only copy of the secret."""
    perms = _check_permissions(permissions)
    if org is not None and ORGS_MANAGE in perms and grantor is not None and not grantor.platform:
        raise Forbidden(lazy_gettext("an org key cannot grant orgs:manage"))
    if grantor is not None and not grantor.platform:
        # A key can hand out at most what it holds itself.
        beyond = sorted(set(perms) - grantor.permissions)
        if beyond:
            raise Forbidden(lazy_gettext("cannot grant permissions this key does not hold: %(permissions)s",
                                           permissions=", ".join(beyond)))
    secret = new_api_key()
    key = ApiKey(org_id=org.id if org else None, name=name, prefix=secret[:12],
                 key_hash=token_hash(secret), permissions=perms, created_by=str(actor))
    session.add(key)
    session.flush()
    audit.record(session, actor, "api_key.created", org_id=key.org_id, target_type="api_key",
                 target_id=key.id, details={"permissions": perms, "name": name, "platform": org is None})
    return key, secret


def _digest(presented: str | None) -> str:
    """The hash a presented key is stored under; Unauthenticated for what cannot be a key."""
    if not presented:
        raise Unauthenticated(lazy_gettext("send an API key as 'Authorization: Bearer ibk_…'"))
    if not presented.startswith(API_KEY_PREFIX):
        raise Unauthenticated(lazy_gettext("the API key is not valid"))
    return token_hash(presented)


def authenticate(session: Session, presented: str | None) -> Principal:
    """The principal for a presented key, or Unauthenticated."""
    digest = _digest(presented)
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or not same(key.key_hash, digest) or key.revoked_at is not None:
        raise Unauthenticated(lazy_gettext("the API key is not valid"))
    return Principal(key_id=key.id, org_id=key.org_id, permissions=frozenset(key.permissions))


@dataclass(frozen=True)
class Presented:
    """What authenticate_on() found: the key's principal, when the key was last used, and the id of the org
    the request names (None when no org has that slug)."""

    principal: Principal
    last_used_at: datetime | None
    named_org_id: str | None


def authenticate_on(connection: Connection, presented: str | None, org_slug: str) -> Presented:
    """authenticate() as one compiled statement on the caller's connection, in its transaction, which also
    looks up the org `org_slug` names; Unauthenticated as there."""
    digest = _digest(presented)
    row = compiled(connection, "api_keys.authenticate_on", _authenticate_statement).first(
        connection, {"key_hash": digest, "slug": org_slug})
    if row is None:
        raise Unauthenticated(lazy_gettext("the API key is not valid"))
    key_id, org_id, key_hash, permissions, revoked_at, last_used_at, named_org_id = row
    if not same(key_hash, digest) or revoked_at is not None:
        raise Unauthenticated(lazy_gettext("the API key is not valid"))
    return Presented(Principal(key_id=key_id, org_id=org_id, permissions=frozenset(permissions)), last_used_at,
                     named_org_id)


@functools.cache
def _authenticate_statement() -> Select[Any]:
    keys, orgs = table_of(ApiKey), table_of(Organization)
    return (select(keys.c.id, keys.c.org_id, keys.c.key_hash, keys.c.permissions, keys.c.revoked_at,
                   keys.c.last_used_at, orgs.c.id)
            .select_from(keys).outerjoin(orgs, orgs.c.slug == bindparam("slug"))
            .where(keys.c.key_hash == bindparam("key_hash")))


def _stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a use now is worth recording: at most once a minute per key, so reads do not turn into writes."""
    return last_used_at is None or (now - last_used_at).total_seconds() > 60


def touch(session: Session, key_id: str) -> None:
    """Record use, at most once a minute per key so reads do not turn into writes."""
    key = session.get(ApiKey, key_id)
    now = utcnow()
    if key is not None and _stale(key.last_used_at, now):
        key.last_used_at = now


def touch_on(connection: Connection, presented: Presented) -> None:
    """touch() on the caller's connection for a key authenticate_on() found."""
    now = utcnow()
    if _stale(presented.last_used_at, now):
        compiled(connection, "api_keys.touch_on", _touch_statement).run(
            connection, {"key_id": presented.principal.key_id, "now": now})


@functools.cache
def _touch_statement() -> Update:
    keys = table_of(ApiKey)
    return update(keys).where(keys.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


def get(session: Session, org: Organization | None, key_id: str) -> ApiKey:
    """A live key of the org, or of the platform when org is None; NotFound otherwise."""
    key = session.get(ApiKey, key_id)
    if key is None or key.org_id != (org.id if org else None) or key.revoked_at is not None:
        raise NotFound(lazy_gettext("API key %(id)s does not exist in %(org)s", id=key_id, org=org.slug)
                       if org else lazy_gettext("API key %(id)s does not exist in the platform scope", id=key_id))
    return key


def list_for(session: Session, org: Organization | None, *, limit: int | None = None) -> list[ApiKey]:
    """The live keys of the org, or the platform-wide keys when org is None, oldest first."""
    scope = ApiKey.org_id == org.id if org else ApiKey.org_id.is_(None)
    return list(session.scalars(select(ApiKey).where(scope, ApiKey.revoked_at.is_(None))
                                .order_by(ApiKey.created_at, ApiKey.id).limit(limit)))


def _may_manage(caller: Principal | None, key: ApiKey, verb: str) -> None:
    """A key may rotate or delete only keys whose permissions it holds; a platform key or the operator any."""
    if caller is None or caller.platform:
        return
    # Rotation hands the caller the target's permissions, and deletion takes them from whoever holds the
    # target: either would let a narrow key act beyond what it was given.
    lacking = sorted(set(key.permissions) - caller.permissions)
    if lacking:
        text = (lazy_gettext("cannot rotate a key with permissions this key does not hold: %(permissions)s",
                             permissions=", ".join(lacking)) if verb == "rotate" else
                lazy_gettext("cannot delete a key with permissions this key does not hold: %(permissions)s",
                             permissions=", ".join(lacking)))
        raise Forbidden(text, missing_permissions=lacking)


def rotate(session: Session, actor: Actor, org: Organization | None, key_id: str, *,
           caller: Principal | None) -> tuple[ApiKey, str]:
    """A new key with the same scope and permissions; the old one stops working at once (org None: platform)."""
    old = get(session, org, key_id)
    _may_manage(caller, old, "rotate")
    old.revoked_at = utcnow()
    new, secret = create(session, actor, org=org, permissions=list(old.permissions), name=old.name)
    audit.record(session, actor, "api_key.rotated", org_id=old.org_id, target_type="api_key", target_id=old.id,
                 details={"new_key_id": new.id})
    return new, secret


def delete(session: Session, actor: Actor, org: Organization | None, key_id: str, *,
           caller: Principal | None) -> None:
    """Revoke a key at once (org None: a platform-wide key)."""
    key = get(session, org, key_id)
    _may_manage(caller, key, "delete")
    key.revoked_at = utcnow()
    audit.record(session, actor, "api_key.deleted", org_id=key.org_id, target_type="api_key", target_id=key.id)
