"""Languages and time zones of the HTML faces: Flask-Babel with a per-request language and the reader's zone.

The language is the invite's `locale` on a page about an invite (`speak`), else the best of `Accept-Language`
among the shipped languages, else English. A refusal's text (an `errors.Message`) shows in that language wherever
a template prints it; `said` gives it in that language for the JSON API. The zone is the `tz` cookie our own
script (static/timezone.js) sets from the browser, when it names a real IANA zone; otherwise UTC. Without
JavaScript the pages show UTC.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from flask import Flask, g, has_request_context, request
from flask_babel import Babel, get_locale, get_timezone, refresh

from idp_bridge import locales
from idp_bridge.errors import Message

TZ_COOKIE = "tz"
# Served by the console's static route (web/console/static), for the invitee pages too: one origin, no inline code.
TZ_SCRIPT = "/console/static/timezone.js"


def install(app: Flask) -> None:
    """Babel on the app, and the date filters and globals the templates use."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(locales.TRANSLATIONS_DIR)
    app.config["BABEL_DEFAULT_LOCALE"] = locales.DEFAULT
    Babel(app, locale_selector=_language, timezone_selector=_zone)
    # Set before any template compiles: every `{{ … }}` that prints a Message prints it in the reader's language.
    app.jinja_env.finalize = _shown
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["long_when"] = long_when
    app.jinja_env.globals["page_language"] = language
    app.jinja_env.globals["tz_script"] = TZ_SCRIPT


def _language() -> str:
    chosen = g.get("invite_locale")
    if chosen:
        return locales.language_of(chosen)
    if not has_request_context():
        return locales.DEFAULT
    return request.accept_languages.best_match(locales.SHIPPED, default=locales.DEFAULT) or locales.DEFAULT


def _zone() -> tzinfo:
    return locales.zone(request.cookies.get(TZ_COOKIE) if has_request_context() else None)


def speak(tag: str | None) -> None:
    """Render the rest of this request in an invite's language (`None`: the browser's)."""
    if tag:
        g.invite_locale = tag
        refresh()


def language() -> str:
    """The language this request renders in (`en`, `de`): the pages' `<html lang>`."""
    found = get_locale()
    return found.language if found is not None else locales.DEFAULT


def said(text: str) -> str:
    """Text of ours in the language of this request (English outside one); other text as it is."""
    return locales.in_language(text, language() if has_request_context() else locales.DEFAULT)


def _shown(value: Any) -> Any:
    return said(value) if isinstance(value, Message) else value


def _reader_zone() -> tzinfo:
    found: Any = get_timezone()
    return found if found is not None else locales.zone(None)


def when(moment: datetime | None, seconds: bool = False) -> str:
    """A date and time for a table cell, in the reader's zone and language (`—` for none)."""
    if moment is None:
        return "—"
    return locales.short_when(moment, language(), _reader_zone(), seconds=seconds)


def long_when(moment: datetime) -> str:
    """A date and time for a sentence, in the reader's zone and language."""
    return locales.long_when(moment, language(), _reader_zone())
