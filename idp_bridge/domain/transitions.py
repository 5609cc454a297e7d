"""The state transitions of invites and members: each one's guard and the values it writes, decided here once.

Services load the rows, call one of these and write what it returns; none of them re-checks a guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idp_bridge.domain.states import InviteStatus, MemberStatus, ProvisioningState
from idp_bridge.errors import InvalidState, lazy_gettext


def effective_status(status: str, expires_at: datetime, now: datetime) -> str:
    """EXPIRED as soon as expires_at passes, whether or not the sweeper has run."""
    if status == InviteStatus.PENDING and expires_at <= now:
        return InviteStatus.EXPIRED.value
    return status


def may_accept(invite_status: str, member_status: str) -> bool:
    """An invite can be accepted while it is (effectively) PENDING and its member INVITED."""
    return invite_status == InviteStatus.PENDING and member_status == MemberStatus.INVITED


@dataclass(frozen=True)
class Acceptance:
    """Invite → ACCEPTED with its member INVITED → ACTIVE: the columns each takes and the events' numbers."""

    invite: dict[str, Any]
    member: dict[str, Any]
    # `invite.accepted` carries this sequence number, `member.activated` the next.
    sequence: int


def accept(*, invite_status: str, member_status: str, activated_at: datetime | None, event_seq: int | None,
           now: datetime) -> Acceptance:
    """The one owner of invite acceptance with member activation; invite_status is the effective status."""
    if not may_accept(invite_status, member_status):
        raise InvalidState(lazy_gettext("an invite %(status)s with its member %(member_status)s cannot be accepted",
                                        status=invite_status, member_status=member_status),
                           status=invite_status)
    sequence = (event_seq or 0) + 1
    return Acceptance(
        invite={"status": InviteStatus.ACCEPTED.value, "accepted_at": now, "updated_at": now},
        member={"status": MemberStatus.ACTIVE.value, "activated_at": activated_at or now, "last_login_at": now,
                "updated_at": now, "event_seq": sequence + 1},
        sequence=sequence)


@dataclass(frozen=True)
class Closing:
    """A PENDING invite ended (REVOKED or EXPIRED) with its INVITED member DELETED."""

    invite: dict[str, Any]
    member: dict[str, Any]  # empty when the member is not INVITED and stays as it is
    event_type: str
    # The IdP account provisioned for the invite (or being provisioned) is to be removed.
    deprovision: bool


def close(*, invite_status: str, to: InviteStatus, member_status: str, idp_user_id: str | None,
          provisioning_state: str, now: datetime) -> Closing:
    """The one owner of revoke and expiry: a stored PENDING invite ends, and its INVITED member with it."""
    if to not in (InviteStatus.REVOKED, InviteStatus.EXPIRED):
        raise ValueError(f"an invite is closed as REVOKED or EXPIRED, not {to}")
    if invite_status != InviteStatus.PENDING:
        refusal = (lazy_gettext("invite is %(status)s; only a pending invite can be revoked", status=invite_status)
                   if to == InviteStatus.REVOKED else
                   lazy_gettext("invite is %(status)s; only a pending invite can be expired", status=invite_status))
        raise InvalidState(refusal, status=invite_status)
    invite = _ended(to, now)
    member: dict[str, Any] = {}
    if member_status == MemberStatus.INVITED:
        member = {"status": MemberStatus.DELETED.value, "deleted_at": now}
    deprovision = bool(idp_user_id) or provisioning_state in (ProvisioningState.PENDING, ProvisioningState.DONE)
    return Closing(invite, member, f"invite.{to.lower()}", deprovision)


def _ended(to: InviteStatus, now: datetime) -> dict[str, Any]:
    """The columns of an invite that ends as REVOKED (stamped) or EXPIRED."""
    invite: dict[str, Any] = {"status": to.value}
    if to == InviteStatus.REVOKED:
        invite["revoked_at"] = now
    return invite


@dataclass(frozen=True)
class Removal:
    """A live member DELETED, its stored PENDING invite (if any) REVOKED with it."""

    member: dict[str, Any]
    invite: dict[str, Any]  # empty when there is no pending invite to revoke
    # The IdP account already bound to the revoked invite is to be removed.
    deprovision: bool


def remove(*, member_id: str, member_status: str, invite_status: str | None, idp_user_id: str | None,
           now: datetime) -> Removal:
    """The one owner of member removal; invite_status is the stored status of the member's pending invite, if any.

    Unlike close(), the member goes whatever its live status, and only an account already bound is deprovisioned.
    """
    if member_status == MemberStatus.DELETED:
        raise InvalidState(lazy_gettext("member %(id)s was already removed", id=member_id), status=member_status)
    revoked = invite_status == InviteStatus.PENDING
    return Removal({"status": MemberStatus.DELETED.value, "deleted_at": now},
                   _ended(InviteStatus.REVOKED, now) if revoked else {},
                   revoked and bool(idp_user_id))


@dataclass(frozen=True)
class Reopening:
    """An EXPIRED invite PENDING again, with its DELETED member INVITED again (which takes a seat)."""

    invite: dict[str, Any]
    member: dict[str, Any]  # empty when the member was not DELETED and stays as it is
    needs_seat: bool


def reopen(*, invite_id: str, invite_status: str, member_status: str, provisioning_state: str,
           idp_user_id: str | None) -> Reopening:
    """The one owner of reopening an expired invite on resend; invite_status is the stored status."""
    if invite_status != InviteStatus.EXPIRED:
        raise InvalidState(lazy_gettext("invite %(id)s is %(status)s; only an expired invite can be reopened",
                                        id=invite_id, status=invite_status),
                           status=invite_status)
    invite: dict[str, Any] = {"status": InviteStatus.PENDING.value}
    # Provisioning that left no account bound starts afresh; an account still bound is kept.
    if provisioning_state == ProvisioningState.DONE and not idp_user_id:
        invite["provisioning_state"] = ProvisioningState.NONE.value
    deleted = member_status == MemberStatus.DELETED
    member: dict[str, Any] = {"status": MemberStatus.INVITED.value, "deleted_at": None} if deleted else {}
    return Reopening(invite, member, deleted)


@dataclass(frozen=True)
class ActiveChange:
    """ACTIVE ↔ DEACTIVATED: the member's new columns and the action's name (`deactivated`/`reactivated`)."""

    member: dict[str, Any]
    action: str


def set_active(*, member_id: str, member_status: str, active: bool, source: str) -> ActiveChange:
    """The one owner of deactivation and reactivation; `source` is who asked (`admin` or an IdP's source)."""
    wanted_from = MemberStatus.DEACTIVATED if active else MemberStatus.ACTIVE
    action = "reactivated" if active else "deactivated"
    if member_status != wanted_from:
        raise InvalidState(lazy_gettext("member %(id)s is %(status)s; only a DEACTIVATED member can be reactivated",
                                        id=member_id, status=member_status) if active else
                           lazy_gettext("member %(id)s is %(status)s; only an ACTIVE member can be deactivated",
                                        id=member_id, status=member_status), status=member_status)
    # Remembered so that an IdP re-enabling an account undoes only its own deactivation.
    return ActiveChange({"status": (MemberStatus.ACTIVE if active else MemberStatus.DEACTIVATED).value,
                         "deactivated_by": None if active else source}, action)


DIRECTORY = "scim"


def directory_active(*, member_id: str, member_status: str, active: bool,
                     activated_at: datetime | None) -> ActiveChange | None:
    """The one owner of a directory's `active` (SCIM): None when the member already is what the directory says.

    Unlike an admin, a directory also deactivates a member who never signed in, and its `active: true` brings
    the member back to what it was: ACTIVE once it has signed in, else INVITED (its invite still open).
    """
    if member_status == MemberStatus.DELETED:
        raise InvalidState(lazy_gettext("member %(id)s was removed", id=member_id), status=member_status)
    if active == (member_status != MemberStatus.DEACTIVATED):
        return None
    if member_status == MemberStatus.INVITED:
        return ActiveChange({"status": MemberStatus.DEACTIVATED.value, "deactivated_by": DIRECTORY}, "deactivated")
    if active and activated_at is None:
        return ActiveChange({"status": MemberStatus.INVITED.value, "deactivated_by": None}, "reactivated")
    return set_active(member_id=member_id, member_status=member_status, active=active, source=DIRECTORY)


def role_from_groups(groups: Iterable[str], group_roles: Mapping[str, str]) -> str | None:
    """The role a member's directory groups give: the first mapped group listed wins; None when none is mapped."""
    held = set(groups)
    return next((role for group, role in group_roles.items() if group in held), None)


def idp_may_deactivate(member_status: str) -> bool:
    """An IdP's report that the account was disabled deactivates an ACTIVE member only."""
    return member_status == MemberStatus.ACTIVE


def idp_may_reactivate(*, member_status: str, deactivated_by: str | None, source: str,
                       occurred_at: datetime | None, updated_at: datetime) -> bool:
    """An IdP undoes only its own deactivation, and only with news newer than the member's last change."""
    if member_status != MemberStatus.DEACTIVATED or deactivated_by != source:
        return False
    return occurred_at is None or occurred_at > updated_at
