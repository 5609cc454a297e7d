"""Pairs of addresses that look alike but are different mailboxes, and pairs that are the same mailbox."""

from __future__ import annotations

from typing import NamedTuple


class Pair(NamedTuple):
    """Two addresses; `invitable` when an admin can invite either one (no invisible or bidi characters)."""

    label: str
    plain: str
    lookalike: str
    invitable: bool = True


NEVER_MATCH: tuple[Pair, ...] = (
    Pair("sharp s in the local part", "strasse@example.com", "stra\u00dfe@example.com"),
    Pair("sharp s in the domain", "victim@strasse.de", "victim@stra\u00dfe.de"),
    Pair("Kelvin sign against k", "kate@example.com", "\u212aate@example.com"),
    Pair("Kelvin sign against K", "Kate@example.com", "\u212aate@example.com"),
    Pair("fi ligature", "file@example.com", "\ufb01le@example.com"),
    Pair("dotless i", "ian@example.com", "\u0131an@example.com"),
    Pair("capital I with dot", "ian@example.com", "\u0130an@example.com"),
    Pair("dotless i in the domain", "victim@info.de", "victim@\u0131nfo.de"),
    Pair("full-width letters", "victim@example.com", "\uff56\uff49\uff43\uff54\uff49\uff4d@example.com"),
    Pair("one full-width capital", "Victim@example.com", "\uff36ictim@example.com"),
    Pair("Cyrillic a", "admin@example.com", "\u0430dmin@example.com"),
    Pair("Cyrillic e", "eve@example.com", "\u0435ve@example.com"),
    Pair("Cyrillic o", "bob@example.com", "b\u043eb@example.com"),
    Pair("Cyrillic r", "paul@example.com", "\u0440aul@example.com"),
    Pair("Cyrillic s", "sam@example.com", "\u0441am@example.com"),
    Pair("Cyrillic a in the domain", "victim@example.com", "victim@ex\u0430mple.com"),
    Pair("decomposed e-acute against precomposed (NFC)", "\u00e9mile@example.com", "e\u0301mile@example.com"),
    Pair("zero-width space", "victim@example.com", "vic\u200btim@example.com", invitable=False),
    Pair("zero-width non-joiner", "victim@example.com", "vic\u200ctim@example.com", invitable=False),
    Pair("zero-width joiner", "victim@example.com", "vic\u200dtim@example.com", invitable=False),
    Pair("zero-width no-break space", "victim@example.com", "\ufeffvictim@example.com", invitable=False),
    Pair("right-to-left override", "victim@example.com", "vic\u202etim@example.com", invitable=False),
    Pair("left-to-right mark", "victim@example.com", "victim\u200e@example.com", invitable=False),
    Pair("zero-width joiner in the domain", "victim@example.com", "victim@exa\u200dmple.com", invitable=False),
    Pair("right-to-left override in the domain", "victim@example.com", "victim@exa\u202emple.com",
         invitable=False),
    Pair("ideographic space before the address", "victim@example.com", "\u3000victim@example.com",
         invitable=False),
)

# UTS #46 maps these domains to the same DNS name, so the mail reaches the same mailbox.
SAME_MAILBOX: tuple[Pair, ...] = (
    Pair("ASCII case in local part and domain", "ada@example.com", "Ada@Example.COM"),
    Pair("U-label and A-label of one domain", "victim@stra\u00dfe.de", "victim@xn--strae-oqa.de"),
    Pair("upper-case A-label", "victim@xn--strae-oqa.de", "victim@XN--STRAE-OQA.DE"),
    Pair("full-width letters in the domain (UTS #46 maps them)", "victim@example.com",
         "victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"),
    Pair("Kelvin sign in the domain (UTS #46 maps it)", "victim@kelvin.com", "victim@\u212aelvin.com"),
)
