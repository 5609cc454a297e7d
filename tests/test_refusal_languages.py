"""Refusals speak the reader's language: every message a service refuses with is marked for the catalogs, reads as
its English text wherever it is a string (CLI, logs), and the API gives `detail` in the request's Accept-Language."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from idp_bridge import locales
from idp_bridge.bridge import Bridge
from idp_bridge.errors import Message, NotFound, ValidationFailed, joined, lazy_gettext
from tests.helpers import Api, make_key, make_org
from tests.test_translations import po_of

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("idp_bridge", "providers", "webhooks")
# Their text is for the operator (a setting, a schema to migrate) or an IdP's own answer: English only, in the log
# and the CLI.
UNTRANSLATED = {"ConfigError", "ProviderError", "SchemaNotCurrent"}
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


def test_a_message_is_its_english_text_wherever_it_is_used_as_a_string() -> None:
    message = lazy_gettext("%(org)s has %(used)s of %(limit)s seats in use", org="acme", used=3, limit=3)
    assert message == "acme has 3 of 3 seats in use"
    assert f"{message}" == str(message) == "acme has 3 of 3 seats in use"
    assert json.dumps({"detail": message}) == '{"detail": "acme has 3 of 3 seats in use"}'
    assert NotFound(message).detail == "acme has 3 of 3 seats in use"


def test_a_message_is_said_in_a_shipped_language_with_its_values_and_the_messages_among_them() -> None:
    refusal = ValidationFailed({"domain": [lazy_gettext("must be a domain name, not an IP address")]})
    assert refusal.detail == "domain: must be a domain name, not an IP address"
    assert locales.in_language(refusal.detail, "de") == "domain: muss ein Domainname sein, keine IP-Adresse"
    assert locales.in_language(refusal.detail, "en") == refusal.detail
    assert locales.in_language("plain text", "de") == "plain text"
    both = joined("; ", [lazy_gettext("is required"), "as given"])
    assert both == "is required; as given"
    assert locales.in_language(both, "de") == "ist erforderlich; as given"
    assert locales.in_language(joined("; ", []), "de") == ""


def refusal_classes(trees: dict[Path, ast.Module]) -> set[str]:
    """The names of BridgeError and every class that derives from it in our packages."""
    found = {"BridgeError"}
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in found and any(
                        (base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")) in found
                        for base in node.bases):
                    found.add(node.name)
                    grew = True
    return found


def untranslated_classes(trees: dict[Path, ast.Module]) -> set[str]:
    found = set(UNTRANSLATED)
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") in UNTRANSLATED for b in node.bases):
                found.add(node.name)
    return found


def texts(node: ast.expr) -> Iterator[ast.expr]:
    """The expressions that become a person's text: a detail, or the messages of an errors mapping."""
    if isinstance(node, ast.Dict):
        for value in node.values:
            yield from texts(value)
    elif isinstance(node, ast.List):
        for element in node.elts:
            yield from texts(element)
    elif isinstance(node, ast.ListComp):
        yield from texts(node.elt)
    elif isinstance(node, ast.IfExp):
        yield from texts(node.body)
        yield from texts(node.orelse)
    else:
        yield node


def plain_text(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)
                                               and bool(node.value))


@pytest.fixture(scope="module")
def trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path))
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            if "migrations" not in path.parts}


def test_every_refusal_and_field_problem_is_a_marked_message_not_plain_text(trees: dict[Path, ast.Module]) -> None:
    refusals = refusal_classes(trees) - untranslated_classes(trees)
    assert {"NotFound", "ValidationFailed", "SeatLimitReached", "NotVerified"} <= refusals
    plain = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            shown: list[ast.expr] = []
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name in refusals:
                    shown = [*node.args[:2], *(k.value for k in node.keywords if k.arg == "detail")]
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Subscript) and getattr(t.value, "id", "") == "errors" for t in node.targets):
                shown = [node.value]
            plain += [f"{path.relative_to(ROOT)}:{text.lineno}" for expr in shown for text in texts(expr)
                      if plain_text(text)]
    assert plain == [], "mark these with idp_bridge.errors.lazy_gettext"


def test_every_marked_message_has_a_german_translation(trees: dict[Path, ast.Module]) -> None:
    marked = {node.args[0].value for tree in trees.values() for node in ast.walk(tree)
              if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) ==
              "lazy_gettext" and node.args and isinstance(node.args[0], ast.Constant)}
    assert "%(org)s has %(used)s of %(limit)s seats in use" in marked
    catalog = po_of("de")
    missing = sorted(m for m in marked if catalog.get(m) is None or not catalog.get(m).string
                     or catalog.get(m).fuzzy)
    assert missing == []


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", member_limit=1)
    return Api(client, make_key(bridge, "acme"))


def test_an_api_refusal_speaks_the_requests_language_and_english_without_one(api: Api) -> None:
    api.invite("ada@example.com")
    english = api.post("/invites", {"identifier": "bob@example.com"})
    german = api.post("/invites", {"identifier": "bob@example.com"}, headers=GERMAN)
    french = api.post("/invites", {"identifier": "bob@example.com"}, headers={"Accept-Language": "fr"})

    assert english.status_code == german.status_code == 409
    assert english.get_json()["detail"] == "acme has 1 of 1 seats in use" == french.get_json()["detail"]
    body = german.get_json()
    assert body["detail"] == "bei acme sind 1 von 1 Plätzen belegt"
    assert (body["type"], body["title"], body["code"]) == ("urn:idp-bridge:problem:seat_limit_reached",
                                                           "Member limit reached", "seat_limit_reached")
    assert german.headers["Content-Type"] == "application/problem+json"


def test_an_api_validation_problem_gives_detail_and_field_messages_in_the_requests_language(api: Api) -> None:
    english = api.get("/members?limit=0").get_json()
    german = api.get("/members?limit=0", headers=GERMAN).get_json()
    assert english["detail"] == "limit: must be between 1 and 200"
    assert english["errors"] == {"limit": ["must be between 1 and 200"]}
    assert german["detail"] == "limit: muss zwischen 1 und 200 liegen"
    assert german["errors"] == {"limit": ["muss zwischen 1 und 200 liegen"]}
    assert german["title"] == english["title"] == "Invalid request"


def test_a_not_found_refusal_names_the_thing_in_german(api: Api) -> None:
    german = api.get("/invites/nope", headers=GERMAN)
    assert german.status_code == 404
    assert german.get_json()["detail"] == "Einladung nope existiert in acme nicht"
    assert api.get("/invites/nope").get_json()["detail"] == "invite nope does not exist in acme"


def test_a_message_made_outside_a_request_stays_english(bridge: Bridge, app: object) -> None:
    from idp_bridge.web.i18n import said

    message = lazy_gettext("invite %(id)s does not exist in %(org)s", id="x", org="acme")
    assert said(message) == "invite x does not exist in acme"
    assert isinstance(message, Message)
