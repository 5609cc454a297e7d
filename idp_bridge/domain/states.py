"""The states an invite, a member and an invite's provisioning can be in, as plain string enums."""

from __future__ import annotations

import enum

# An invite that any configured (and org-allowed) provider may redeem.
ANY_PROVIDER = "any"


class InviteStatus(enum.StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"


class MemberStatus(enum.StrEnum):
    INVITED = "INVITED"
    ACTIVE = "ACTIVE"
    DEACTIVATED = "DEACTIVATED"
    DELETED = "DELETED"


# The statuses that hold one of the org's seats.
SEAT_STATUSES = (MemberStatus.INVITED, MemberStatus.ACTIVE, MemberStatus.DEACTIVATED)


class ProvisioningState(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class MatchPolicy(enum.StrEnum):
    EMAIL = "email"
    LINK = "link"
