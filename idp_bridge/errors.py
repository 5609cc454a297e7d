"""Domain errors: each carries a stable code; the HTTP layer maps codes to statuses in one place.

A refusal's text is a `Message`: English wherever it is used as a string (the CLI, logs, the API by default),
and the faces show it in the reader's language (`locales.in_language`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class Catalog(Protocol):
    """The part of a compiled catalog a message needs (babel's Translations)."""

    def gettext(self, message: str) -> str: ...


class Message(str):
    """Text a person reads: its English as the string, with the message id and the values to say it in another
    language."""

    msgid: str
    values: Mapping[str, object]

    def __new__(cls, msgid: str, values: Mapping[str, object] | None = None) -> Message:
        shown = dict(values or {})
        self = super().__new__(cls, msgid % shown if shown else msgid)
        self.msgid = msgid
        self.values = shown
        return self

    def translated(self, catalog: Catalog) -> str:
        """The message in the catalog's language, with its values (messages among them translated too)."""
        # An empty id would give the catalog's header.
        text = catalog.gettext(self.msgid) if self.msgid else self.msgid
        if not self.values:
            return text
        return text % {name: value.translated(catalog) if isinstance(value, Message) else value
                       for name, value in self.values.items()}


def lazy_gettext(message: str, **values: object) -> Message:
    """Mark a message for the catalogs: English now, translated when a face shows it; `%(name)s` takes `values`."""
    return Message(message, values)


def joined(separator: str, parts: Iterable[str]) -> Message:
    """Parts (messages among them) as one text, each part in the reader's language when a face shows it."""
    items = list(parts)
    pattern = separator.replace("%", "%%").join(f"%(part{i})s" for i in range(len(items)))
    return Message(pattern, {f"part{i}": part for i, part in enumerate(items)})


class BridgeError(Exception):
    """Base of every error idp-bridge raises on purpose."""

    code = "error"
    title: str = lazy_gettext("Request failed")

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ConfigError(BridgeError):
    """A setting is missing or wrong; names the setting."""

    code = "config_invalid"
    title = lazy_gettext("Configuration error")

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting}: {problem}", setting=setting)
        self.setting = setting


class ValidationFailed(BridgeError):
    """Input does not satisfy the rules; `errors` maps field to messages."""

    code = "validation_failed"
    title = lazy_gettext("Invalid request")

    def __init__(self, errors: dict[str, list[str]], detail: str = "") -> None:
        first = next(iter(errors.items()), ("", [""]))
        super().__init__(detail or (lazy_gettext("%(field)s: %(problem)s", field=first[0], problem=first[1][0])
                                    if first[0] else self.title))
        self.errors = errors


class BadRequest(BridgeError):
    code = "bad_request"
    title = lazy_gettext("Bad request")


class NotFound(BridgeError):
    code = "not_found"
    title = lazy_gettext("Not found")


class Unauthenticated(BridgeError):
    code = "unauthenticated"
    title = lazy_gettext("Authentication required")


class Forbidden(BridgeError):
    code = "forbidden"
    title = lazy_gettext("Forbidden")


class Conflict(BridgeError):
    code = "conflict"
    title = lazy_gettext("Conflict")


class AlreadyExists(Conflict):
    code = "already_exists"
    title = lazy_gettext("Already exists")


class SeatLimitReached(Conflict):
    code = "seat_limit_reached"
    title = lazy_gettext("Member limit reached")


class InvalidState(Conflict):
    code = "invalid_state"
    title = lazy_gettext("Not allowed in the current state")


class LastOwner(Conflict):
    code = "last_owner"
    title = lazy_gettext("The last owner cannot be removed")


class PayloadTooLarge(BridgeError):
    code = "payload_too_large"
    title = lazy_gettext("Payload too large")


class UnsupportedMediaType(BridgeError):
    code = "unsupported_media_type"
    title = lazy_gettext("Unsupported media type")


class ProviderError(BridgeError):
    """An IdP call failed; `retryable` says whether a later attempt may succeed."""

    code = "provider_error"
    title = lazy_gettext("Identity provider error")

    def __init__(self, detail: str, *, retryable: bool, retry_after: float | None = None,
                 provider_code: str = "", **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retryable = retryable
        self.retry_after = retry_after
        self.provider_code = provider_code


class DNSLookupFailed(BridgeError):
    """A DNS query got no answer (timeout, server failure); not the same as a name without records."""

    code = "dns_lookup_failed"
    title = lazy_gettext("DNS lookup failed")
