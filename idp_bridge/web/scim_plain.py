"""The dump of a plain SCIM create body, computed without validating it through scim2-models.

Directories send the same simple shape on every POST /Users: a userName, a few strings, a name, work emails,
`active`. For such a body, plain_dump() returns exactly what scim2-models returns for it (the User validated in a
creation request, then dumped as a query response): the same keys in the same order, the same values. Any other
body gets None, and the caller validates it with scim2-models as always; so a body the library would refuse, or
treat in a way not mirrored here, never gets a dump from this module. tests/test_scim_plain.py holds the two equal.

What is mirrored from scim2-models for this subset:
- the dump's order is the order the models declare their fields in, whatever the order of the body's keys;
- `schemas` is dumped as the core schema, then the enterprise one when its extension holds a value;
- an email's value is what pydantic's EmailStr makes of it (pydantic.networks.validate_email, normalised);
- an email's type is an ExtensibleStringEnum: a case variant of work/home/other becomes that value;
- at most one email may be primary;
- empty lists and complex attributes without a value are left out; `password` is never returned, and the
  read-only `meta` and `groups` are dropped from a creation request.

Plain is: the keys in their canonical spelling; `schemas` listing the core schema and perhaps the enterprise one;
a non-empty userName; strings for the single-valued attributes, `name` and the enterprise extension (without its
manager); a bool for `active`; emails of value, display, type and primary; and, as Okta and Entra document their
creates, a string password, empty groups and roles, and a meta of `{"resourceType": "User"}`. No string holds NUL.
"""

from __future__ import annotations

from typing import Any

from pydantic.networks import validate_email
from scim2_models import EnterpriseUser, User

CORE_SCHEMA = str(User.__schema__)
ENTERPRISE_SCHEMA = str(EnterpriseUser.__schema__)

# The User's string attributes, in the order the models declare them: two before `name`, the others after it.
LEADING = ("externalId", "userName")
STRINGS = ("displayName", "nickName", "title", "userType", "preferredLanguage", "locale", "timezone")
NAME = ("formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix")
ENTERPRISE = ("employeeNumber", "costCenter", "organization", "division", "department")
EMAIL = frozenset({"value", "display", "type", "primary"})
EMAIL_TYPES = ("work", "home", "other")
# What Okta and Entra add to a create in their documented requests and the library drops: the password (never
# returned), the read-only groups and meta, and an empty list of roles.
IGNORED = frozenset({"password", "groups", "meta", "roles"})
KNOWN = frozenset({"schemas", *LEADING, "name", *STRINGS, "active", "emails", ENTERPRISE_SCHEMA, *IGNORED})
DOCUMENTED_META = {"resourceType": "User"}


def plain_dump(body: dict[str, Any]) -> dict[str, Any] | None:
    """The scim2-models dump of a plain create body, or None when the body is not plain."""
    if not KNOWN.issuperset(body) or not _plain_schemas(body.get("schemas")) or not _ignorable(body):
        return None
    out: dict[str, Any] = {"schemas": [CORE_SCHEMA]}
    for key in LEADING:
        if key in body:
            if not _text(value := body[key]):
                return None
            out[key] = value
    if not out.get("userName"):
        return None
    if "name" in body:
        if (name := _strings(body["name"], NAME)) is None:
            return None
        if name:
            out["name"] = name
    for key in STRINGS:
        if key in body:
            if not _text(value := body[key]):
                return None
            out[key] = value
    if "active" in body:
        if type(active := body["active"]) is not bool:
            return None
        out["active"] = active
    if "emails" in body:
        if (emails := _emails(body["emails"])) is None:
            return None
        if emails:
            out["emails"] = emails
    if ENTERPRISE_SCHEMA in body:
        if (extension := _strings(body[ENTERPRISE_SCHEMA], ENTERPRISE)) is None:
            return None
        if extension:
            out["schemas"] = [CORE_SCHEMA, ENTERPRISE_SCHEMA]
            out[ENTERPRISE_SCHEMA] = extension
    return out


def _text(value: Any) -> bool:
    return type(value) is str and "\x00" not in value


def _plain_schemas(schemas: Any) -> bool:
    """A list of the core schema and, perhaps, the enterprise one; the library refuses any other URN."""
    return (type(schemas) is list and CORE_SCHEMA in schemas
            and all(s in (CORE_SCHEMA, ENTERPRISE_SCHEMA) for s in schemas))


def _ignorable(body: dict[str, Any]) -> bool:
    """What the library drops from a create, in the forms the directories document it, and nothing else."""
    return (("password" not in body or _text(body["password"]))
            and all(type(body.get(key, [])) is list and not body.get(key) for key in ("groups", "roles"))
            and ("meta" not in body or (type(body["meta"]) is dict and body["meta"] == DOCUMENTED_META)))


def _strings(given: Any, order: tuple[str, ...]) -> dict[str, str] | None:
    """A complex attribute of strings, in its model's order; None unless every key is one of `order`."""
    if type(given) is not dict or not all(_text(v) for v in given.values()) or not set(order).issuperset(given):
        return None
    return {key: given[key] for key in order if key in given}


def _emails(given: Any) -> list[dict[str, Any]] | None:
    if type(given) is not list:
        return None
    out = []
    primaries = 0
    for entry in given:
        if type(entry) is not dict or "value" not in entry or not EMAIL.issuperset(entry):
            return None
        if (value := _email(entry["value"])) is None:
            return None
        email: dict[str, Any] = {"value": value}
        if "display" in entry:
            if not _text(display := entry["display"]):
                return None
            email["display"] = display
        if "type" in entry:
            if not _text(kind := entry["type"]):
                return None
            email["type"] = _email_type(kind)
        if "primary" in entry:
            if type(primary := entry["primary"]) is not bool:
                return None
            primaries += primary
            email["primary"] = primary
        out.append(email)
    return out if primaries <= 1 else None


def _email(value: Any) -> str | None:
    """What EmailStr makes of the value: the normalised address, or None where it refuses it."""
    if not _text(value):
        return None
    try:
        return validate_email(value)[1]
    except ValueError:
        # PydanticCustomError is one, and a ValueError raised inside a validator is a refusal too.
        return None


def _email_type(kind: str) -> str:
    """As Email.Type (an ExtensibleStringEnum) reads it: a canonical value in any case, else the string as sent."""
    folded = kind.lower()
    return next((canonical for canonical in EMAIL_TYPES if canonical == folded), kind)
