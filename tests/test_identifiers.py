"""The canonical form of identifiers and emails (SPEC §3 rule 5), checked over generated Unicode addresses."""

from __future__ import annotations

import idna
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from idp_bridge.identifiers import (
    InvalidDomain,
    canonical_domain,
    canonical_email,
    identifier_key,
    same_email,
    search_forms,
)
from tests.confusables import NEVER_MATCH, SAME_MAILBOX

# Any code point but surrogates and the @ that ends the local part.
LOCAL_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="@")
LOCAL = st.text(LOCAL_CHAR, min_size=1, max_size=24)
NON_ASCII = st.characters(blacklist_categories=("Cs",), blacklist_characters="@", min_codepoint=0x80)
# Letters that IDNA allows, ASCII in both cases and the look-alikes the review used; labels that are not
# valid IDNA together (the bidi and context rules) are filtered out by the domain strategy.
DOMAIN_LETTERS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "\u00df\u00fc\u00e9\u0131\u0430\u0435\u043e\u0440\u0441\u212a\uff45\uff2b\ufb01\u00f6\u4e2d")
LABEL = st.text(st.sampled_from(DOMAIN_LETTERS), min_size=1, max_size=12)


def _idna(domain: str) -> str | None:
    """The reference A-label: the idna package's UTS #46, non-transitional; None when invalid."""
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None


DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]),
                   st.lists(LABEL, min_size=1, max_size=3), st.sampled_from(["com", "de", "ORG", "xn--p1ai"])
                   ).filter(lambda d: _idna(d) is not None)


def _ascii_lower_reference(text: str) -> str:
    """Only A-Z changes; written out here so the test does not reuse the code under test."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


@st.composite
def address_pairs(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """Two (local, domain) pairs: unrelated, an ASCII case variant, or the same with the domain's A-label."""
    local, domain = draw(LOCAL), draw(DOMAIN)
    kind = draw(st.sampled_from(["unrelated", "ascii case", "a-label"]))
    if kind == "unrelated":
        return local, domain, draw(LOCAL), draw(DOMAIN)
    if kind == "a-label":
        # The same domain spelled as its A-label, in upper case: still the same mailbox.
        return local, domain, local, str(_idna(domain)).upper()
    flip = draw(st.lists(st.booleans(), min_size=len(local) + len(domain), max_size=len(local) + len(domain)))
    swapped = "".join(c.swapcase() if f and c.isascii() else c for c, f in zip(local + domain, flip, strict=True))
    return local, domain, swapped[:len(local)], swapped[len(local):]


@given(LOCAL, DOMAIN)
@example("\u212aate", "stra\u00dfe.de")
@settings(max_examples=300, deadline=None)
def test_the_canonical_form_is_idempotent(local: str, domain: str) -> None:
    once = canonical_email(f"{local}@{domain}")
    assert canonical_email(once) == once
    assert identifier_key(once) == once == identifier_key(f"{local}@{domain}")


@given(address_pairs())
@example(("victim", "strasse.de", "victim", "stra\u00dfe.de"))
@example(("kate", "example.com", "\u212aate", "example.com"))
@example(("Ada", "Example.COM", "ada", "example.com"))
@settings(max_examples=400, deadline=None)
def test_two_addresses_are_equal_exactly_when_ascii_lowered_locals_and_uts46_a_labels_are(
        pair: tuple[str, str, str, str]) -> None:
    local_a, domain_a, local_b, domain_b = pair
    expected = (_ascii_lower_reference(local_a) == _ascii_lower_reference(local_b)
                and _idna(domain_a) == _idna(domain_b))
    a, b = f"{local_a}@{domain_a}", f"{local_b}@{domain_b}"
    assert (canonical_email(a) == canonical_email(b)) is expected
    assert same_email(a, b) is expected


@given(LOCAL.filter(lambda s: not s.isascii()), st.integers(min_value=0, max_value=100), DOMAIN,
       NON_ASCII | LOCAL_CHAR)
@example("\u212aate", 0, "example.com", "k")
@example("stra\u00dfe", 0, "example.com", "s")
@settings(max_examples=400, deadline=None)
def test_changing_any_non_ascii_code_point_of_the_local_part_never_matches(
        local: str, which: int, domain: str, replacement: str) -> None:
    positions = [i for i, c in enumerate(local) if not c.isascii()]
    at = positions[which % len(positions)]
    assume(replacement != local[at])
    changed = local[:at] + replacement + local[at + 1:]
    assert canonical_email(f"{local}@{domain}") != canonical_email(f"{changed}@{domain}")
    assert not same_email(f"{local}@{domain}", f"{changed}@{domain}")


@given(LOCAL, st.integers(min_value=0, max_value=24), NON_ASCII, DOMAIN)
@settings(max_examples=300, deadline=None)
def test_inserting_or_removing_a_non_ascii_code_point_in_the_local_part_never_matches(
        local: str, at: int, inserted: str, domain: str) -> None:
    longer = local[:at] + inserted + local[at:]
    assert not same_email(f"{local}@{domain}", f"{longer}@{domain}")


@given(st.text(st.sampled_from("abcXYZ019-."), min_size=1, max_size=40))
@example("Example.COM")
@example("xn--strae-oqa.de")
@example("a--b.com")
@settings(max_examples=400, deadline=None)
def test_the_ascii_fast_path_gives_exactly_what_idna_gives(domain: str) -> None:
    reference = _idna(domain)
    if reference is None:
        with pytest.raises(InvalidDomain):
            canonical_domain(domain)
    else:
        assert canonical_domain(domain) == reference


@pytest.mark.parametrize("pair", NEVER_MATCH, ids=[p.label for p in NEVER_MATCH])
def test_a_lookalike_address_is_never_the_same_mailbox(pair: object) -> None:
    assert isinstance(pair, tuple)
    _, plain, lookalike, _ = pair
    assert not same_email(plain, lookalike) and not same_email(lookalike, plain)


@pytest.mark.parametrize("pair", SAME_MAILBOX, ids=[p.label for p in SAME_MAILBOX])
def test_case_and_the_uts46_spelling_of_a_domain_do_not_make_another_mailbox(pair: object) -> None:
    assert isinstance(pair, tuple)
    _, plain, other, _ = pair
    assert same_email(plain, other) and canonical_email(plain) == canonical_email(other)


@pytest.mark.parametrize("address", ["victim@", "@example.com", "victim", "victim@exa\u202emple.com",
                                     "victim@a..b", "victim@-a.com", "victim@xn--abc.com", "victim@" + "a" * 2000])
def test_an_address_without_a_valid_idna_domain_matches_nothing_not_even_itself(address: str) -> None:
    with pytest.raises(InvalidDomain):
        canonical_email(address)
    assert not same_email(address, address)


def test_a_non_email_identifier_lowercases_only_ascii_letters() -> None:
    assert identifier_key("Ada.Lovelace") == "ada.lovelace"
    assert identifier_key("\u212aATE") == "\u212aate"
    assert identifier_key("STRA\u00dfE") == "stra\u00dfe"


def test_a_search_for_a_unicode_domain_also_looks_for_its_a_label() -> None:
    assert search_forms("Victim@STRA\u00dfE.de") == ("victim@stra\u00dfe.de", "victim@xn--strae-oqa.de")
    assert search_forms("ADA") == ("ada",)
    assert search_forms("\u212aate") == ("\u212aate",)
    assert search_forms("\u212aate@\u212aelvin.com") == ("\u212aate@\u212aelvin.com", "\u212aate@kelvin.com")
