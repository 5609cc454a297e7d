"""plain_dump() against scim2-models: a body it answers for is one the library accepts and dumps the same way."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scim2_models import Context

from idp_bridge.errors import ValidationFailed
from idp_bridge.services.directory import DirectoryUser
from idp_bridge.web import scim, scim_plain
from idp_bridge.web.scim_plain import plain_dump
from tests.test_scim import CORE, ENTERPRISE, entra_user, okta_user

CHECKED = settings(max_examples=300, deadline=timedelta(seconds=2), database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# The shape bench/scim.py posts, as Okta sends it on every create.
OKTA_EVERY_DAY = {"schemas": [CORE], "userName": "a@example.com", "externalId": "00u1",
                  "name": {"givenName": "User", "familyName": "1"}, "displayName": "User 1",
                  "emails": [{"primary": True, "value": "a@example.com", "type": "work"}], "active": True}


def validated(body: dict[str, Any]) -> Any:
    return scim.USER.model_validate(body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=scim.POLICY)


def shape(value: Any) -> Any:
    """The value with its key order and the exact type of every leaf, for an equality that misses neither."""
    if isinstance(value, dict):
        return [(type(value).__name__, key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [type(value).__name__, *(shape(item) for item in value)]
    return type(value).__name__, value


def model_directory_user(user: Any) -> DirectoryUser:
    """The member's columns as directory_user() always took them from the model, before it read the dump."""
    kept = {k: v for k, v in scim._dump(user).items() if k not in scim.NOT_KEPT}
    if not user.user_name:
        raise ValidationFailed({"userName": ["is required"]})
    emails = user.emails or []
    chosen = (next((e for e in emails if str(e.type or "") == "work"), None)
              or next((e for e in emails if e.primary), None) or (emails[0] if emails else None))
    name = user.display_name or ""
    if not name and user.name is not None:
        name = user.name.formatted or " ".join(p for p in (user.name.given_name, user.name.family_name) if p)
    return DirectoryUser(user_name=user.user_name, external_id=user.external_id, name=name[:200],
                         email=chosen.value if chosen is not None else None,
                         active=True if user.active is None else bool(user.active), attributes=kept)


def taken(fn: Any, *args: Any) -> Any:
    """What fn returns, or the kind of error it raises with its message keys."""
    try:
        return fn(*args)
    except ValidationFailed as exc:
        return ValidationFailed, sorted(exc.errors)


strings = st.one_of(st.text(max_size=8), st.sampled_from(["", " ", "Ünïcödé", "\U0001f600", "x" * 300]))
not_strings = st.sampled_from([None, 1, 1.5, True, [], {}, ["a"], {"value": "a"}])
locals_ = st.sampled_from(["a", "Ann.Example", "user+tag", "ü", "用户", "O'Hara", "x" * 64, "a..b", ".a", ""])
domains = st.sampled_from(["example.com", "Contoso.COM", "bücher.de", "xn--bcher-kva.de", "例子.广告", "b",
                           "[127.0.0.1]", "localhost", "-example.com", "example.com.", "ex_ample.com"])
addresses = st.one_of(
    st.builds("{}@{}".format, locals_, domains),
    st.sampled_from(["  padded@example.com ", "Ann <ann@example.com>", '"Ann, B" <ann@example.com>', "no-at-sign",
                     "a@@example.com", "a@example.com\n", "mailto:a@example.com", ""]))
email_types = st.sampled_from(["work", "work", "Work", "WORK", "home", "Other", "custom", "", "wor\u212a", "work "])
odd_keys = st.sampled_from(["UserName", "displayname", "user_name", "DISPLAYNAME", "Active", "Emails", "nickname",
                            "unknownAttribute", "id", "phoneNumbers", "profileUrl", ENTERPRISE.lower(), "password",
                            "groups", "roles", "meta", "Password", "META"])
odd_values = st.one_of(not_strings, st.sampled_from([
    "a\x00b", "true", "True", [{"value": "g"}], {"resourceType": "User"}, {"resourceType": "Group"},
    {"resourceType": "User", "location": "x"}, [[{"value": "a@example.com"}]], {"manager": {"value": "m"}},
    {"nested": {"x": "y"}}]))


schema_lists = st.sampled_from([[CORE], [CORE, ENTERPRISE], [ENTERPRISE, CORE]])
odd_schema_lists = st.sampled_from([[CORE, CORE], [ENTERPRISE], [], CORE, [CORE.lower()],
                                    [CORE, "urn:example:other"], [CORE, None]])
user_names = st.one_of(addresses, strings)
single_keys = st.lists(st.sampled_from(("externalId", *scim_plain.STRINGS)), unique=True, max_size=4)
name_keys = st.lists(st.sampled_from(scim_plain.NAME), unique=True, max_size=4)
enterprise_keys = st.lists(st.sampled_from(scim_plain.ENTERPRISE), unique=True, max_size=3)
directory_extras = st.lists(st.sampled_from([("password", "1mz050nq"), ("groups", []), ("roles", []),
                                             ("meta", {"resourceType": "User"})]), max_size=2)
odd_entries = st.one_of(strings, odd_values)


@st.composite
def email_entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": draw(addresses)}
    if draw(st.booleans()):
        entry["type"] = draw(email_types)
    if draw(st.booleans()):
        entry["primary"] = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        entry["display"] = draw(strings)
    return entry


email_lists = st.lists(email_entries(), max_size=3)


@st.composite
def plain_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies of the shape the directories send, the way they send them."""
    body: dict[str, Any] = {"schemas": draw(schema_lists), "userName": draw(user_names)}
    for key in draw(single_keys):
        body[key] = draw(strings)
    if draw(st.booleans()):
        body["name"] = {k: draw(strings) for k in draw(name_keys)}
    if draw(st.booleans()):
        body["active"] = draw(st.booleans())
    if draw(st.integers(0, 3)):
        body["emails"] = draw(email_lists)
    if draw(st.integers(0, 2)) == 0:
        body[ENTERPRISE] = {k: draw(strings) for k in draw(enterprise_keys)}
    for key, value in draw(directory_extras):
        body[key] = value
    return body


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index path inside a body."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _places(item, (*path, index))
    return found


@st.composite
def near_misses(draw: st.DrawFn) -> dict[str, Any]:
    """A plain body with one or two of its parts changed: a value of another type, a key in another case or of
    another attribute, a NUL, a nesting, an odd schemas list."""
    body = copy.deepcopy(draw(plain_bodies()))
    for _ in range(draw(st.integers(1, 2))):
        place = draw(st.sampled_from(_places(body)[1:]))
        *parent_path, last = place
        parent = body
        for step in parent_path:
            parent = parent[step]
        how = draw(st.integers(0, 4))
        if how == 0:
            parent[last] = copy.deepcopy(draw(odd_values))
        elif how == 1 and isinstance(parent, dict) and isinstance(last, str):
            parent[draw(st.sampled_from([last.upper(), last.lower(), last[:1].upper() + last[1:], last + " "]))] = (
                parent.pop(last))
        elif how == 2 and isinstance(parent[last], str):
            parent[last] = parent[last] + "\x00"
        elif how == 3:
            parent[last] = [parent[last]] if draw(st.booleans()) else {"value": parent[last]}
        else:
            body[draw(odd_keys)] = copy.deepcopy(draw(odd_entries))
    if draw(st.integers(0, 3)) == 0:
        body["schemas"] = draw(odd_schema_lists)
    if draw(st.integers(0, 5)) == 0:
        del body[draw(st.sampled_from(sorted(body)))]
    return body


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Plain bodies and near misses of them, their keys in any order."""
    body = draw(st.one_of(plain_bodies(), near_misses()))
    keys = draw(st.permutations(list(body)))
    return copy.deepcopy({k: body[k] for k in keys})


@CHECKED
@given(bodies())
def test_a_body_with_a_plain_dump_is_accepted_by_scim2_models_and_dumped_and_taken_as_the_plain_dump(
        body: dict[str, Any]) -> None:
    plain = plain_dump(body)
    if plain is None:
        return
    user = validated(body)
    dumped = scim._dump(user)
    assert shape(plain) == shape(dumped)
    assert json.dumps(plain) == json.dumps(dumped)
    assert scim.directory_user_from_dump(plain) == scim.directory_user(user) == model_directory_user(user)


@CHECKED
@given(bodies())
def test_directory_user_takes_from_any_accepted_user_what_it_took_from_the_model(body: dict[str, Any]) -> None:
    try:
        user = validated(body)
    except ValidationError:
        return
    expected = taken(model_directory_user, user)
    assert taken(scim.directory_user, user) == expected
    assert taken(scim.directory_user, user, scim._dump(user)) == expected


@pytest.mark.parametrize("body", [okta_user(), entra_user(), OKTA_EVERY_DAY,
                                  {"schemas": [CORE], "userName": "plain@example.com"},
                                  {"schemas": [CORE, ENTERPRISE], "userName": "ann@contoso.com",
                                   "emails": [{"value": "Ann@Contoso.com", "type": "Work", "primary": True},
                                              {"value": "ann@home.example", "type": "home", "display": "Ann"}],
                                   ENTERPRISE: {"department": "R&D", "employeeNumber": "42"}}],
                         ids=["okta", "entra", "bench", "bare", "enterprise"])
def test_the_documented_create_requests_are_plain_and_dumped_as_scim2_models_dumps_them(
        body: dict[str, Any]) -> None:
    plain = plain_dump(body)
    assert plain is not None
    assert shape(plain) == shape(scim._dump(validated(body)))


@pytest.mark.parametrize("change", [
    {"id": "2819c223"}, {"meta": {"resourceType": "User", "location": "x"}}, {"groups": [{"value": "g"}]},
    {"password": 5}, {"userName": ""}, {"userName": "a\x00"}, {"UserName": "x@example.com"},
    {"emails": [{"value": "a@example.com", "primary": True}, {"value": "b@example.com", "primary": True}]},
    {"emails": [{"value": "not an address"}]}, {"emails": [{"type": "work"}]}, {"active": "True"},
    {"schemas": [CORE, "urn:example:other"]}, {"name": {"givenName": {"first": "A"}}},
    {ENTERPRISE: {"manager": {"value": "m"}}}])
def test_a_body_off_the_plain_shape_is_left_to_scim2_models(change: dict[str, Any]) -> None:
    assert plain_dump({**okta_user(), **change}) is None


def test_an_empty_first_email_still_names_no_address_when_none_is_the_work_or_primary_one() -> None:
    user = validated({"schemas": [CORE], "userName": "a@example.com",
                      "emails": [{}, {"value": "b@example.com", "type": "home"}]})
    assert scim.directory_user(user).email is None
    assert scim.directory_user_from_dump(scim._dump(user)).email == "b@example.com"
