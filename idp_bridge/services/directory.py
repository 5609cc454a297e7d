"""Directory sync (SCIM 2.0): the members a directory creates, replaces, deactivates and deletes.

Each change goes through the same use cases as the API (an invitation, members' transitions), audited with
the directory's key as the actor. A SCIM filter is answered in SQL where it names what members store in
columns (userName, externalId, the work email, id); any other filter is evaluated on each member in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from scim2_models.path.expressions import AttrPath, Comparison, FilterNode, LogicalExpr, ValuePath
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from idp_bridge import audit
from idp_bridge.audit import Actor
from idp_bridge.errors import AlreadyExists, NotFound, ValidationFailed
from idp_bridge.identifiers import identifier_key
from idp_bridge.inputs import InviteInput, looks_like_email, normalize_email
from idp_bridge.models import MatchPolicy, Member, MemberStatus, Organization
from idp_bridge.services import invites, members, orgs
from idp_bridge.services.ports import Inviting
from idp_bridge.settings import Settings

SOURCE = "scim"


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
        raise NotFound(f"user {member_id} does not exist in {org.slug}")
    return member


def create(session: Session, deps: Inviting, actor: Actor, org: Organization, user: DirectoryUser) -> Member:
    """A member INVITED with its invite (mailed unless the org turned SCIM mail off), or DEACTIVATED at once."""
    notify = user.email if user.email and identifier_key(user.email) != identifier_key(user.user_name) else None
    try:
        data = InviteInput(identifier=user.user_name, name=user.name, notification_email=notify,
                           send_email=org.scim_send_email)
    except ValidationError as exc:
        raise ValidationFailed(_errors(exc)) from None
    issued = invites.create(session, deps, actor, org, data)
    member = issued.invite.member
    _keep(member, user)
    session.flush()
    members.set_active_from_directory(session, deps.settings, actor, org, member, active=user.active)
    return member


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
        raise AlreadyExists(f"{identifier} is already a member of {org.slug}", existing_id=existing.id)
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
