"""Directory sync (SCIM 2.0): the members a directory creates, replaces, deactivates and deletes.

Each change goes through the same use cases as the API (an invitation, members' transitions), audited with
the directory's key as the actor. A SCIM filter is answered in SQL where it names what members store in
columns (userName, externalId, the work email, id); any other filter is evaluated on each member in turn.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from pydantic import ValidationError
from scim2_models.path.expressions import AttrPath, Comparison, FilterNode, LogicalExpr, ValuePath
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from idp_bridge import audit
from idp_bridge.audit import Actor
from idp_bridge.domain import transitions
from idp_bridge.domain.invitation import seats_missing
from idp_bridge.errors import AlreadyExists, NotFound, ValidationFailed, lazy_gettext
from idp_bridge.identifiers import identifier_key
from idp_bridge.inputs import InviteInput, looks_like_email, normalize_email
from idp_bridge.models import (
    SEAT_STATUSES,
    DirectoryGroup,
    DirectoryGroupMember,
    Invite,
    InviteStatus,
    MatchPolicy,
    Member,
    MemberStatus,
    Organization,
    utcnow,
)
from idp_bridge.services import invites, members, orgs
from idp_bridge.services.bulk import Issuer
from idp_bridge.services.ports import Inviting, WithProviders
from idp_bridge.settings import Settings
from idp_bridge.store.compiled import compiled
from idp_bridge.store.sql import Flavor, flavor, table_of

SOURCE = "scim"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DirectoryUser:
    """A SCIM User as a member sees it: the columns it maps to, and the rest of its attributes as written."""

    user_name: str
    external_id: str | None = None
    name: str = ""
    email: str | None = None
    active: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)


def get(session: Session, org: Organization, member_id: str) -> Member:
    """A live member of the org; a removed one is gone for the directory."""
    member = session.get(Member, member_id)
    if member is None or member.org_id != org.id or member.status == MemberStatus.DELETED:
        raise NotFound(lazy_gettext("user %(id)s does not exist in %(org)s", id=member_id, org=org.slug))
    return member


def _invite_input(org: Organization, user: DirectoryUser) -> InviteInput:
    """The invitation a directory's new user asks for."""
    notify = user.email if user.email and identifier_key(user.email) != identifier_key(user.user_name) else None
    try:
        return InviteInput(identifier=user.user_name, name=user.name, notification_email=notify,
                           send_email=org.scim_send_email)
    except ValidationError as exc:
        raise ValidationFailed(_errors(exc)) from None


def create(session: Session, deps: Inviting, actor: Actor, org: Organization, user: DirectoryUser) -> Member:
    """A member INVITED with its invite (mailed unless the org turned SCIM mail off), or DEACTIVATED at once."""
    issued = invites.create(session, deps, actor, org, _invite_input(org, user))
    member = issued.invite.member
    _keep(member, user)
    session.flush()
    members.set_active_from_directory(session, deps.settings, actor, org, member, active=user.active)
    return member


def create_directly(connection: Connection, deps: WithProviders, actor: Actor, org_id: str,
                    user: DirectoryUser) -> Any | None:
    """create() in the common case, within the caller's transaction on `connection`: an active user with a free
    identifier, a free seat, and no invite of the org past its expiry. Its rows are the ones a bulk import writes
    (bulk.Issuer), inserted with compiled statements: no unit of work, no whole-org expiry sweep.

    Returns the new member's columns (as attributes), or None, having written nothing, for every other case:
    create() then decides as it always has (sweeps the org, refuses a taken identifier or a full org, deactivates
    an inactive user). Input errors raise here as they would there.
    """
    if not user.active:
        return None
    row = compiled(connection, "directory.locked_org", _locked_org_statement).first(connection, {"org_id": org_id})
    if row is None:
        return None
    org = cast(Organization, SimpleNamespace(**dict(zip(_ORG_COLUMNS, row, strict=True))))
    prepared = invites.prepare(deps, org, _invite_input(org, user))
    # Read after the org row is locked (its own statement, so a fresh snapshot on PostgreSQL): the seats and the
    # identifier cannot change until commit.
    checks = compiled(connection, "directory.create_checks", lambda: _checks_statement(flavor(connection)))
    due, taken, used = checks.first(connection, {"org_id": org.id, "key": prepared.key, "now": utcnow(),
                                                 "member_limit": org.member_limit}) or (False, False, 0)
    if due or taken or seats_missing(member_limit=org.member_limit, used=int(used), needed=1):
        return None
    batch = Issuer(deps, actor, org, str(actor)).batch(1)
    member, invite = batch.add(prepared)
    # What _keep() sets on the member after invites.create() (whose event already holds the columns of then).
    member.update(external_id=user.external_id, directory=user.attributes)
    if user.name:
        member["name"] = user.name
    if user.email:
        member["email"] = user.email
    batch.write(connection)
    _warn_unredeemable(deps, org, invite["id"], invite["provider"])
    return SimpleNamespace(**member)


# A directory creates its users one request each, thousands in a row: why nobody can redeem their invites yet (no
# provider configured, say) is logged once per org and reason every WARN_EVERY_SECONDS in each process, as a bulk
# import logs it once, not once per user.
WARN_EVERY_SECONDS = 600.0
_warned_at: dict[tuple[str, str], float] = {}


def _warn_unredeemable(deps: WithProviders, org: Organization, invite_id: str, provider: str) -> None:
    warnings = invites.redeem_warnings(deps, org, [provider])
    if not warnings:
        return
    reasons = "; ".join(warnings)
    now = time.monotonic()
    last = _warned_at.get((org.id, reasons))
    if last is not None and now - last < WARN_EVERY_SECONDS:
        return
    _warned_at[(org.id, reasons)] = now
    log.warning("invite %s in %s: %s (said once every %d minutes for the directory's new users)", invite_id,
                org.slug, reasons, WARN_EVERY_SECONDS // 60)


_ORG_COLUMNS = ("id", "slug", "member_limit", "invite_ttl_hours", "require_invite_code", "allowed_providers",
                "match", "scim_send_email")


@functools.cache
def _locked_org_statement() -> Select[Any]:
    """The org's columns a create reads, its row locked until commit (left out on SQLite: writers take turns)."""
    org = table_of(Organization)
    return select(*(org.c[name] for name in _ORG_COLUMNS)).where(org.c.id == bindparam("org_id")).with_for_update()


@functools.cache
def _checks_statement(sql: Flavor) -> Select[Any]:
    """An invite of the org past its expiry (the sweep's work), the live member holding the identifier, and the
    seats in use, as one row.

    The seats are counted member by member, so where the database has a cheap bound on the members table's rows
    (Flavor.rows_bound) and it is below the org's limit, the bound stands in for the count: it decides the same
    (a free seat), and the count runs only near the limit."""
    invite, member = table_of(Invite), table_of(Member)
    in_org = member.c.org_id == bindparam("org_id")
    # The statuses as literals, as the indexes name them: a partial index (live members by identifier) serves
    # only a condition that says what its own WHERE says.
    due = exists().where(invite.c.status == _literal(InviteStatus.PENDING), invite.c.expires_at <= bindparam("now"),
                         invite.c.org_id == bindparam("org_id"))
    taken = exists().where(in_org, member.c.identifier_key == bindparam("key"),
                           member.c.status != _literal(MemberStatus.DELETED))
    seated = member.c.status.in_([_literal(status) for status in SEAT_STATUSES])
    used: ColumnElement[Any] = select(func.count()).select_from(member).where(in_org, seated).scalar_subquery()
    bound = sql.rows_bound(member)
    if bound is not None:
        used = case((bound < bindparam("member_limit"), bound), else_=used)
    return select(due, taken, used)


def _literal(status: InviteStatus | MemberStatus) -> ColumnElement[str]:
    """A status as an SQL string literal (the values are fixed identifiers, never input)."""
    return literal_column(f"'{status.value}'", String)


def replace(session: Session, settings: Settings, actor: Actor, org: Organization, member_id: str,
            user: DirectoryUser) -> Member:
    """Take the directory's whole view of a member: its attributes, then its `active`."""
    orgs.lock(session, org)
    member = get(session, org, member_id)
    before = _kept(member)
    _rename(session, org, member, user.user_name)
    _keep(member, user)
    if user.name and (invite := invites.pending_invite_of(session, member)) is not None:
        invite.name = member.name
    if _kept(member) != before:
        audit.record(session, actor, "member.directory_updated", org_id=org.id, target_type="member",
                     target_id=member.id, details={"source": SOURCE})
    session.flush()
    members.set_active_from_directory(session, settings, actor, org, member, active=user.active)
    return member


def remove(session: Session, settings: Settings, actor: Actor, org: Organization, member_id: str) -> Member:
    """DELETE: the member is removed as an admin would remove it."""
    get(session, org, member_id)
    return members.remove(session, settings, actor, org, member_id, source=SOURCE)


def _rename(session: Session, org: Organization, member: Member, user_name: str) -> None:
    """A new userName is the member's new identifier (and its open invite's), checked as an invite's would be."""
    identifier = user_name
    if looks_like_email(identifier) or org.match != MatchPolicy.LINK:
        try:
            identifier = normalize_email(identifier)
        except ValueError as exc:
            raise ValidationFailed({"userName": [str(exc)]}) from None
    if identifier == member.identifier:
        return
    key = identifier_key(identifier)
    existing = invites.existing_for(session, org, key)
    if existing is not None and existing.id != member.id:
        raise AlreadyExists(lazy_gettext("%(identifier)s is already a member of %(org)s", identifier=identifier,
                                         org=org.slug), existing_id=existing.id)
    if member.email == member.identifier and looks_like_email(identifier):
        member.email = identifier
    member.identifier, member.identifier_key = identifier, key
    if (invite := invites.pending_invite_of(session, member)) is not None:
        invite.identifier, invite.identifier_key = identifier, key


def _keep(member: Member, user: DirectoryUser) -> None:
    member.external_id = user.external_id
    member.directory = user.attributes
    if user.name:
        member.name = user.name
    if user.email:
        member.email = user.email


def _kept(member: Member) -> tuple[Any, ...]:
    return member.identifier, member.external_id, member.directory, member.name, member.email


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "body"
        errors.setdefault("userName" if where == "identifier" else where, []).append(error["msg"])
    return errors


@dataclass(frozen=True)
class Page:
    """One page of a SCIM list: the members on it and how many match in all."""

    total: int
    items: list[Member]


def search(session: Session, org: Organization, flt: FilterNode | None, *, start_index: int, count: int,
           matches: Callable[[Member], bool]) -> Page:
    """The org's live members matching a filter, oldest first; `matches` answers what SQL cannot."""
    live = select(Member).where(Member.org_id == org.id, Member.status != MemberStatus.DELETED)
    order = (Member.created_at, Member.id)
    condition = condition_for(flt) if flt is not None else None
    if flt is None or condition is not None:
        stmt = live if condition is None else live.where(condition)
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        items = [] if count <= 0 else list(session.scalars(
            stmt.order_by(*order).offset(start_index - 1).limit(count)))
        return Page(int(total), items)
    kept = [m for m in session.scalars(live.order_by(*order).execution_options(yield_per=500)) if matches(m)]
    return Page(len(kept), kept[start_index - 1:start_index - 1 + max(count, 0)])


def condition_for(node: FilterNode) -> ColumnElement[bool] | None:
    """The SQL condition of a filter over what members store in columns; None when it names anything else."""
    if isinstance(node, LogicalExpr):
        terms = [condition_for(term) for term in node.terms]
        if any(term is None for term in terms):
            return None
        combine = and_ if str(node.op).lower() == "and" else or_
        return combine(*[term for term in terms if term is not None])
    if isinstance(node, Comparison) and str(node.op).lower() == "eq" and isinstance(node.value, str):
        return _equals(node.attr_path, node.value)
    if isinstance(node, ValuePath) and _named(node.attr_path, "emails") and node.sub_attr is None:
        return _email_entry(node.val_filter)
    return None


def _named(path: AttrPath, name: str) -> bool:
    return path.attr.lower() == name.lower() and (path.uri is None or path.uri.endswith(":core:2.0:User"))


def _equals(path: AttrPath, value: str) -> ColumnElement[bool] | None:
    if path.sub_attr is None and _named(path, "userName"):
        return Member.identifier_key == identifier_key(value)
    if path.sub_attr is None and _named(path, "externalId"):
        return Member.external_id == value
    if path.sub_attr is None and _named(path, "id"):
        return Member.id == value
    if path.sub_attr is not None and path.sub_attr.lower() == "value" and _named(path, "emails"):
        return func.lower(Member.email) == value.lower()
    return None


def _email_entry(node: FilterNode) -> ColumnElement[bool] | None:
    """`emails[type eq "work" and value eq "…"]`: members keep their work (or primary) address in a column."""
    terms = list(node.terms) if isinstance(node, LogicalExpr) and str(node.op).lower() == "and" else [node]
    value: str | None = None
    for term in terms:
        if not (isinstance(term, Comparison) and str(term.op).lower() == "eq" and isinstance(term.value, str)):
            return None
        attr = term.attr_path.attr.lower()
        if attr == "value":
            value = term.value
        elif not (attr == "type" and term.value.lower() == "work"):
            return None
    return func.lower(Member.email) == value.lower() if value is not None else None


@dataclass(frozen=True)
class DirectoryGroupInput:
    """A SCIM Group as the directory describes it: its name, its id there, the members in it."""

    display_name: str
    external_id: str | None = None
    member_ids: list[str] = field(default_factory=list)
    # The `display` the directory sent with a member, kept and returned as given.
    displays: dict[str, str] = field(default_factory=dict)


def groups_served(settings: Settings) -> bool:
    """Groups exist only to give roles: they are served when `[scim.group_roles]` maps some."""
    return bool(settings.scim.group_roles)


def _require_groups(settings: Settings) -> None:
    if not groups_served(settings):
        raise NotFound(lazy_gettext("Groups are not served: no [scim.group_roles] are configured"))


def get_group(session: Session, settings: Settings, org: Organization, group_id: str) -> DirectoryGroup:
    _require_groups(settings)
    group = session.get(DirectoryGroup, group_id)
    if group is None or group.org_id != org.id:
        raise NotFound(lazy_gettext("group %(id)s does not exist in %(org)s", id=group_id, org=org.slug))
    return group


def list_groups(session: Session, settings: Settings, org: Organization) -> list[DirectoryGroup]:
    _require_groups(settings)
    return list(session.scalars(select(DirectoryGroup).where(DirectoryGroup.org_id == org.id)
                                .order_by(DirectoryGroup.created_at, DirectoryGroup.id)))


def member_ids_of(session: Session, group: DirectoryGroup) -> list[str]:
    """The live members in a group, oldest membership first."""
    return list(session.scalars(
        select(DirectoryGroupMember.member_id).join(Member, Member.id == DirectoryGroupMember.member_id)
        .where(DirectoryGroupMember.group_id == group.id, Member.status != MemberStatus.DELETED)
        .order_by(Member.created_at, Member.id)))


def members_of(session: Session, group: DirectoryGroup) -> list[tuple[str, str | None]]:
    """The live members in a group with the display the directory gave each, oldest membership first."""
    rows = session.execute(
        select(DirectoryGroupMember.member_id, DirectoryGroupMember.display)
        .join(Member, Member.id == DirectoryGroupMember.member_id)
        .where(DirectoryGroupMember.group_id == group.id, Member.status != MemberStatus.DELETED)
        .order_by(Member.created_at, Member.id))
    return [(member_id, display) for member_id, display in rows]


def create_group(session: Session, settings: Settings, actor: Actor, org: Organization,
                 data: DirectoryGroupInput) -> DirectoryGroup:
    """A new group; its members take the role it maps to."""
    _require_groups(settings)
    orgs.lock(session, org)
    _refuse_taken_name(session, org, data.display_name, None)
    group = DirectoryGroup(org_id=org.id, display_name=data.display_name, external_id=data.external_id)
    session.add(group)
    session.flush()
    audit.record(session, actor, "directory_group.created", org_id=org.id, target_type="directory_group",
                 target_id=group.id, details={"display_name": group.display_name, "source": SOURCE})
    _set_members(session, settings, actor, org, group, data, renamed=False)
    return group


def replace_group(session: Session, settings: Settings, actor: Actor, org: Organization, group_id: str,
                  data: DirectoryGroupInput) -> DirectoryGroup:
    """PUT and PATCH: the group's name and members become the directory's; roles follow."""
    group = get_group(session, settings, org, group_id)
    orgs.lock(session, org)
    renamed = data.display_name != group.display_name
    if renamed:
        _refuse_taken_name(session, org, data.display_name, group.id)
    if renamed or data.external_id != group.external_id:
        audit.record(session, actor, "directory_group.updated", org_id=org.id, target_type="directory_group",
                     target_id=group.id, details={"display_name": data.display_name, "source": SOURCE})
    group.display_name, group.external_id = data.display_name, data.external_id
    session.flush()
    _set_members(session, settings, actor, org, group, data, renamed=renamed)
    return group


def remove_group(session: Session, settings: Settings, actor: Actor, org: Organization, group_id: str) -> None:
    """DELETE: the group goes, and its members' roles follow their remaining groups."""
    group = get_group(session, settings, org, group_id)
    orgs.lock(session, org)
    affected = member_ids_of(session, group)
    session.execute(delete(DirectoryGroupMember).where(DirectoryGroupMember.group_id == group.id))
    session.delete(group)
    audit.record(session, actor, "directory_group.deleted", org_id=org.id, target_type="directory_group",
                 target_id=group_id, details={"display_name": group.display_name, "source": SOURCE})
    session.flush()
    _apply_roles(session, settings, actor, org, affected)


def _refuse_taken_name(session: Session, org: Organization, name: str, own_id: str | None) -> None:
    taken = session.scalar(select(DirectoryGroup.id).where(DirectoryGroup.org_id == org.id,
                                                           DirectoryGroup.display_name == name))
    if taken is not None and taken != own_id:
        raise AlreadyExists(lazy_gettext("a group named %(name)r already exists in %(org)s", name=name, org=org.slug),
                            existing_id=taken)


def _set_members(session: Session, settings: Settings, actor: Actor, org: Organization, group: DirectoryGroup,
                 data: DirectoryGroupInput, *, renamed: bool) -> None:
    wanted = list(dict.fromkeys(data.member_ids))
    found = set(session.scalars(select(Member.id).where(Member.id.in_(wanted), Member.org_id == org.id,
                                                        Member.status != MemberStatus.DELETED))) if wanted else set()
    unknown = [m for m in wanted if m not in found]
    if unknown:
        raise ValidationFailed({"members": [lazy_gettext("no user %(id)s in %(org)s", id=m, org=org.slug)
                                            for m in unknown]})
    rows = {row.member_id: row for row in session.scalars(
        select(DirectoryGroupMember).where(DirectoryGroupMember.group_id == group.id))}
    added, dropped = [m for m in wanted if m not in rows], [m for m in rows if m not in found]
    if dropped:
        session.execute(delete(DirectoryGroupMember).where(DirectoryGroupMember.group_id == group.id,
                                                           DirectoryGroupMember.member_id.in_(dropped)))
    for member_id in wanted:
        if member_id in rows and rows[member_id].display != data.displays.get(member_id):
            rows[member_id].display = data.displays.get(member_id)
    session.add_all([DirectoryGroupMember(group_id=group.id, member_id=m, display=data.displays.get(m))
                     for m in added])
    if added or dropped:
        audit.record(session, actor, "directory_group.members_changed", org_id=org.id,
                     target_type="directory_group", target_id=group.id,
                     details={"added": added, "removed": sorted(dropped), "source": SOURCE})
    session.flush()
    _apply_roles(session, settings, actor, org, [*wanted, *sorted(dropped)] if renamed else [*added, *sorted(dropped)])


def _apply_roles(session: Session, settings: Settings, actor: Actor, org: Organization,
                 member_ids: list[str]) -> None:
    """Each member takes the role its groups give (the default role when none is mapped)."""
    for member_id in dict.fromkeys(member_ids):
        names = session.scalars(select(DirectoryGroup.display_name).join(
            DirectoryGroupMember, DirectoryGroupMember.group_id == DirectoryGroup.id)
            .where(DirectoryGroupMember.member_id == member_id))
        role = transitions.role_from_groups(names, settings.scim.group_roles) or settings.default_role()
        member = session.get(Member, member_id)
        if member is not None and member.status != MemberStatus.DELETED and member.role != role:
            members.change_role(session, settings, actor, org, member_id, role)
