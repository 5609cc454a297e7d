"""The shipped catalogs are complete and compiled: every message the code and templates mark (extracted from the
source tree as `make translations` does) has a reviewed translation, and each .mo holds exactly its .po."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from idp_bridge import locales

ROOT = Path(__file__).resolve().parent.parent
# The keywords the Makefile's `translations` target adds to Babel's defaults.
KEYWORDS = {"lazy_gettext": None, "lazy_ngettext": (1, 2)}
TRANSLATED = [language for language in locales.SHIPPED if language != locales.DEFAULT]


def extracted() -> Catalog:
    """The messages of the source tree, read with babel.cfg."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    catalog = Catalog()
    for _file, _line, message, comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords={**DEFAULT_KEYWORDS, **KEYWORDS}):
        catalog.add(message, None, auto_comments=comments, context=context)
    return catalog


def po_of(language: str) -> Catalog:
    with open(locales.TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=language)


def mo_of(language: str) -> Catalog:
    with open(locales.TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.mo", "rb") as fh:
        return read_mo(fh)


def plain(value: object) -> object:
    """A message id or string as one comparable value (a .mo gives plural forms as a list, a .po as a tuple)."""
    return tuple(value) if isinstance(value, list | tuple) else value


@pytest.fixture(scope="module")
def source() -> Catalog:
    return extracted()


def test_the_source_marks_the_pages_the_console_and_the_mail_for_translation(source: Catalog) -> None:
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in source if m.id}
    assert {"Sign in to accept", "Members", "Accept the invitation", "You're invited to join %(org)s",
            "That is not the account this invitation was sent to."} <= ids


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_extracted_message_has_a_reviewed_translation(source: Catalog, language: str) -> None:
    po = po_of(language)
    problems = []
    for message in source:
        if not message.id:
            continue
        found = po.get(message.id)
        if found is None:
            problems.append(f"missing: {message.id!r}")
        elif found.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        elif not all(found.string if isinstance(found.string, tuple) else (found.string,)):
            problems.append(f"empty: {message.id!r}")
    stale = sorted(str(m.id) for m in po if m.id and m.id not in source)
    assert not problems, "run `make translations` and translate:\n" + "\n".join(problems)
    assert not stale, f"no longer in the source (run `make translations`): {stale}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_each_translation_keeps_the_placeholders_of_its_message(language: str) -> None:
    errors = [(message.id, [str(e) for e in found]) for message, found in po_of(language).check()]
    assert not errors


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_holds_exactly_the_po(language: str) -> None:
    po = {plain(m.id): plain(m.string) for m in po_of(language) if m.id and not m.fuzzy}
    mo = {plain(m.id): plain(m.string) for m in mo_of(language) if m.id}
    assert mo == po, "the .mo is out of date: run `make translations`"


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_runtime_loads_the_compiled_catalog(language: str) -> None:
    words = locales.translations(language)
    sample = next(m for m in po_of(language) if m.id and isinstance(m.id, str))
    assert words.gettext(sample.id) == sample.string != sample.id


@pytest.mark.parametrize(("tag", "kept"), [("en", "en"), ("DE-at", "de-AT"), ("zh-hant-tw", "zh-Hant-TW"),
                                           ("x-whatever", "x-whatever"), ("es-419", "es-419")])
def test_language_tags_are_checked_and_put_in_their_conventional_case(tag: str, kept: str) -> None:
    assert locales.normalize_tag(tag) == kept


@pytest.mark.parametrize("bad", ["", " ", "de_AT", "d", "de--AT", "1de", "de-", "de AT", "ü"])
def test_malformed_language_tags_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="BCP 47"):
        locales.normalize_tag(bad)


@pytest.mark.slow
def test_make_translations_runs_as_the_readme_writes_it(tmp_path: Path) -> None:
    """`make translations NEW=fr` starts a catalog holding every message; `make translations` then leaves the shipped
    catalogs byte for byte as they are (they are current). Run in a stand-in checkout whose package is a copy, so
    the real catalogs are never written."""
    import shutil
    import subprocess

    from tests.workdir import checkout_dir, child_env

    work = checkout_dir(tmp_path)
    # The catalogs are written and the sources walked: real directories here, not links.
    for name in ("idp_bridge", "providers"):
        (work / name).unlink()
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "babel.cfg").symlink_to(ROOT / "babel.cfg")
    env = child_env()
    catalogs = work / "idp_bridge" / "translations"
    shipped = {path.relative_to(catalogs): path.read_bytes() for path in catalogs.rglob("messages.*")}

    for command in ("make translations NEW=fr", "make translations"):
        done = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, f"$ {command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

    with open(catalogs / "fr" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        french = read_po(fh, locale="fr")
    assert {m.id for m in french if m.id} == {m.id for m in po_of("de") if m.id}
    assert (catalogs / "fr" / "LC_MESSAGES" / "messages.mo").is_file()
    assert {path: (catalogs / path).read_bytes() for path in shipped} == shipped
    assert not (catalogs / "messages.pot").exists()
