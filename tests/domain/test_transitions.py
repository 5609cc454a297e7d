"""The transitions' guards and the values they write, over every pair of states, with no database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from idp_bridge.domain import transitions
from idp_bridge.domain.invitation import seats_missing
from idp_bridge.domain.states import InviteStatus, MemberStatus, ProvisioningState
from idp_bridge.errors import InvalidState

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_an_invite_counts_as_expired_from_the_instant_it_expires_until_the_sweeper_records_it() -> None:
    for status in InviteStatus:
        assert transitions.effective_status(status, NOW + timedelta(seconds=1), NOW) == status
        expected = InviteStatus.EXPIRED if status == InviteStatus.PENDING else status
        assert transitions.effective_status(status, NOW, NOW) == expected


def test_acceptance_happens_only_from_a_pending_invite_with_an_invited_member() -> None:
    for invite_status, member_status in itertools.product(InviteStatus, MemberStatus):
        allowed = (invite_status, member_status) == (InviteStatus.PENDING, MemberStatus.INVITED)
        assert transitions.may_accept(invite_status, member_status) is allowed
        if not allowed:
            with pytest.raises(InvalidState):
                transitions.accept(invite_status=invite_status, member_status=member_status, activated_at=None,
                                   event_seq=3, now=NOW)


def test_acceptance_makes_the_invite_accepted_and_the_member_active_numbering_both_events() -> None:
    change = transitions.accept(invite_status="PENDING", member_status="INVITED", activated_at=None, event_seq=3,
                                now=NOW)
    assert change.invite == {"status": "ACCEPTED", "accepted_at": NOW, "updated_at": NOW}
    assert change.member == {"status": "ACTIVE", "activated_at": NOW, "last_login_at": NOW, "updated_at": NOW,
                             "event_seq": 5}
    assert change.sequence == 4
    earlier = NOW - timedelta(days=9)
    again = transitions.accept(invite_status="PENDING", member_status="INVITED", activated_at=earlier,
                               event_seq=None, now=NOW)
    assert (again.member["activated_at"], again.sequence, again.member["event_seq"]) == (earlier, 1, 2)


@pytest.mark.parametrize("to", [InviteStatus.REVOKED, InviteStatus.EXPIRED])
def test_closing_ends_only_a_stored_pending_invite_and_deletes_its_member_only_while_invited(
        to: InviteStatus) -> None:
    for invite_status, member_status, provisioning, user in itertools.product(
            InviteStatus, MemberStatus, ProvisioningState, (None, "kc-user-1")):
        given = {"invite_status": invite_status, "to": to, "member_status": member_status, "idp_user_id": user,
                 "provisioning_state": provisioning, "now": NOW}
        if invite_status != InviteStatus.PENDING:
            with pytest.raises(InvalidState):
                transitions.close(**given)
            continue
        closing = transitions.close(**given)
        assert closing.invite["status"] == to
        assert ("revoked_at" in closing.invite) == (to == InviteStatus.REVOKED)
        assert closing.event_type == f"invite.{to.lower()}"
        expected_member = ({"status": "DELETED", "deleted_at": NOW} if member_status == MemberStatus.INVITED
                           else {})
        assert closing.member == expected_member
        assert closing.deprovision == (user is not None or provisioning in ("pending", "done"))


def test_closing_as_anything_but_revoked_or_expired_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="REVOKED or EXPIRED"):
        transitions.close(invite_status="PENDING", to=InviteStatus.ACCEPTED, member_status="INVITED",
                          idp_user_id=None, provisioning_state="none", now=NOW)


@pytest.mark.parametrize("active", [True, False])
def test_deactivation_and_reactivation_go_only_between_active_and_deactivated(active: bool) -> None:
    source = MemberStatus.DEACTIVATED if active else MemberStatus.ACTIVE
    for status in MemberStatus:
        if status != source:
            with pytest.raises(InvalidState, match="only"):
                transitions.set_active(member_id="m1", member_status=status, active=active, source="admin")
            continue
        change = transitions.set_active(member_id="m1", member_status=status, active=active, source="keycloak")
        assert change.member == ({"status": "ACTIVE", "deactivated_by": None} if active
                                 else {"status": "DEACTIVATED", "deactivated_by": "keycloak"})
        assert change.action == ("reactivated" if active else "deactivated")


def test_an_idp_undoes_only_its_own_deactivation_and_only_with_newer_news() -> None:
    before, after = NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)
    for status, by, occurred in itertools.product(MemberStatus, ("keycloak", "admin", None), (None, before, NOW,
                                                                                                after)):
        expected = (status == MemberStatus.DEACTIVATED and by == "keycloak"
                    and (occurred is None or occurred > NOW))
        assert transitions.idp_may_reactivate(member_status=status, deactivated_by=by, source="keycloak",
                                              occurred_at=occurred, updated_at=NOW) is expected
    for status in MemberStatus:
        assert transitions.idp_may_deactivate(status) is (status == MemberStatus.ACTIVE)


def test_the_seats_missing_are_what_the_request_takes_beyond_the_free_ones() -> None:
    for limit, used, needed in itertools.product(range(4), range(5), range(4)):
        assert seats_missing(member_limit=limit, used=used, needed=needed) == max(0, used + needed - limit)


def test_removal_deletes_any_live_member_and_revokes_only_a_stored_pending_invite() -> None:
    for member_status, invite_status, user in itertools.product(MemberStatus, (None, *InviteStatus),
                                                                (None, "kc-user-1")):
        given = {"member_id": "m1", "member_status": member_status, "invite_status": invite_status,
                 "idp_user_id": user, "now": NOW}
        if member_status == MemberStatus.DELETED:
            with pytest.raises(InvalidState, match="already removed"):
                transitions.remove(**given)
            continue
        removal = transitions.remove(**given)
        assert removal.member == {"status": "DELETED", "deleted_at": NOW}
        revoked = invite_status == InviteStatus.PENDING
        assert removal.invite == ({"status": "REVOKED", "revoked_at": NOW} if revoked else {})
        assert removal.deprovision == (revoked and user is not None)


def test_reopening_brings_back_only_an_expired_invite_and_its_deleted_member_with_a_seat() -> None:
    for invite_status, member_status, provisioning, user in itertools.product(
            InviteStatus, MemberStatus, ProvisioningState, (None, "kc-user-1")):
        given = {"invite_id": "i1", "invite_status": invite_status, "member_status": member_status,
                 "provisioning_state": provisioning, "idp_user_id": user}
        if invite_status != InviteStatus.EXPIRED:
            with pytest.raises(InvalidState, match="only an expired invite"):
                transitions.reopen(**given)
            continue
        reopening = transitions.reopen(**given)
        deleted = member_status == MemberStatus.DELETED
        assert reopening.needs_seat is deleted
        assert reopening.member == ({"status": "INVITED", "deleted_at": None} if deleted else {})
        expected_invite: dict[str, str] = {"status": "PENDING"}
        if provisioning == ProvisioningState.DONE and user is None:
            expected_invite["provisioning_state"] = "none"
        assert reopening.invite == expected_invite


def test_a_directorys_active_flag_moves_every_live_member_to_where_the_directory_says() -> None:
    # (status, signed in before, active) → the new status, or None when nothing changes.
    wanted = {
        (MemberStatus.INVITED, False, True): None,
        (MemberStatus.INVITED, False, False): MemberStatus.DEACTIVATED,
        (MemberStatus.ACTIVE, True, True): None,
        (MemberStatus.ACTIVE, True, False): MemberStatus.DEACTIVATED,
        (MemberStatus.DEACTIVATED, True, False): None,
        (MemberStatus.DEACTIVATED, True, True): MemberStatus.ACTIVE,
        (MemberStatus.DEACTIVATED, False, True): MemberStatus.INVITED,
    }
    for (status, signed_in, active), to in wanted.items():
        change = transitions.directory_active(member_id="m1", member_status=status, active=active,
                                              activated_at=NOW if signed_in else None)
        if to is None:
            assert change is None, (status, active)
            continue
        assert change is not None and change.member["status"] == to, (status, active)
        assert change.action == ("reactivated" if active else "deactivated")
        assert change.member["deactivated_by"] == (None if active else transitions.DIRECTORY)
    for active in (True, False):
        with pytest.raises(InvalidState):
            transitions.directory_active(member_id="m1", member_status=MemberStatus.DELETED, active=active,
                                         activated_at=None)
