"""The one canonical form identifiers and email addresses are stored, deduplicated, searched and matched in.

SPEC §3 rule 5: the domain is its IDNA 2008 / UTS #46 (non-transitional) A-label in lower-case ASCII; the
local part, and any identifier that is not an email, has its ASCII letters lower-cased and every other code
point kept exactly as given. Never casefold, NFKC or NFC: each of them makes different mailboxes equal
(`ß` → `ss`, the Kelvin sign → `k`, `ﬁ` → `fi`).
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

import idna

from idp_bridge.errors import lazy_gettext

MAX_DOMAIN_CHARS = 1024

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# Letters-digits-hyphen labels that cannot be A-labels: their A-label is themselves in lower case.
_PLAIN_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}"
                           r"[A-Za-z0-9]")


class InvalidDomain(ValueError):
    """A domain that has no IDNA 2008 / UTS #46 A-label."""


def ascii_lower(text: str) -> str:
    """The text with its ASCII letters lower-cased and every other code point exactly as given."""
    if text.isascii():
        return text.lower()
    return text.translate(_ASCII_LOWER)


@lru_cache(maxsize=4096)
def canonical_domain(domain: str) -> str:
    """The domain's IDNA 2008 / UTS #46 A-label in lower-case ASCII; InvalidDomain when it has none."""
    if domain.isascii() and _PLAIN_DOMAIN.fullmatch(domain) and "--" not in domain and len(domain) <= 253:
        return domain.lower()
    if len(domain) > MAX_DOMAIN_CHARS:
        # idna's Punycode work grows faster than linearly; no real domain is this long even before mapping.
        raise InvalidDomain(lazy_gettext("the domain is too long"))
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidDomain(lazy_gettext("the domain is not valid IDNA (%(problem)s)", problem=str(exc))) from exc


def canonical_email(address: str) -> str:
    """local@domain in canonical form; InvalidDomain when there is no @ or the domain is not valid IDNA."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise InvalidDomain(lazy_gettext("an email address needs a local part, an @ and a domain"))
    return f"{ascii_lower(local)}@{canonical_domain(domain)}"


def identifier_key(identifier: str) -> str:
    """The canonical form of an invite identifier: an email's canonical form, else ASCII letters lower-cased."""
    if "@" in identifier:
        return canonical_email(identifier)
    return ascii_lower(identifier)


def same_email(claimed: str | None, invited: str | None) -> bool:
    """Whether two addresses name the same mailbox; an address without a valid domain names none."""
    if not claimed or not invited:
        return False
    try:
        return canonical_email(claimed) == canonical_email(invited)
    except InvalidDomain:
        return False


def search_forms(text: str) -> tuple[str, ...]:
    """The canonical forms a search text can take: as typed (ASCII lower-cased), and with the part after
    its @ as an A-label when that differs."""
    typed = ascii_lower(text)
    local, at, domain = typed.rpartition("@")
    if not at or domain.isascii():
        return (typed,)
    try:
        encoded = f"{local}@{canonical_domain(domain)}"
    except InvalidDomain:
        return (typed,)
    return (typed, encoded)
