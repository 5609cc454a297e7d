"""Domain errors: each carries a stable code; the HTTP layer maps codes to statuses in one place."""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Base of every error idp-bridge raises on purpose."""

    code = "error"
    title = "Request failed"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ConfigError(BridgeError):
    """A setting is missing or wrong; names the setting."""

    code = "config_invalid"
    title = "Configuration error"

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting}: {problem}", setting=setting)
        self.setting = setting


class ValidationFailed(BridgeError):
    """Input does not satisfy the rules; `errors` maps field to messages."""

    code = "validation_failed"
    title = "Invalid request"

    def __init__(self, errors: dict[str, list[str]], detail: str = "") -> None:
        first = next(iter(errors.items()), ("", [""]))
        super().__init__(detail or f"{first[0]}: {first[1][0]}" if first[0] else "Invalid request")
        self.errors = errors


class BadRequest(BridgeError):
    code = "bad_request"
    title = "Bad request"


class NotFound(BridgeError):
    code = "not_found"
    title = "Not found"


class Unauthenticated(BridgeError):
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(BridgeError):
    code = "forbidden"
    title = "Forbidden"


class Conflict(BridgeError):
    code = "conflict"
    title = "Conflict"


class AlreadyExists(Conflict):
    code = "already_exists"
    title = "Already exists"


class SeatLimitReached(Conflict):
    code = "seat_limit_reached"
    title = "Member limit reached"


class InvalidState(Conflict):
    code = "invalid_state"
    title = "Not allowed in the current state"


class LastOwner(Conflict):
    code = "last_owner"
    title = "The last owner cannot be removed"


class PayloadTooLarge(BridgeError):
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(BridgeError):
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ProviderError(BridgeError):
    """An IdP call failed; `retryable` says whether a later attempt may succeed."""

    code = "provider_error"
    title = "Identity provider error"

    def __init__(self, detail: str, *, retryable: bool, retry_after: float | None = None,
                 provider_code: str = "", **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retryable = retryable
        self.retry_after = retry_after
        self.provider_code = provider_code


class DNSLookupFailed(BridgeError):
    """A DNS query got no answer (timeout, server failure); not the same as a name without records."""

    code = "dns_lookup_failed"
    title = "DNS lookup failed"
