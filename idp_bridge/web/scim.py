"""The SCIM 2.0 service provider at /scim/v2/{org} (RFC 7643/7644): discovery and Users, answering SCIM only.

scim2-models validates the resources, parses filters and applies PATCH operations (with the tolerances Entra
needs); `services/directory.py` carries out each change through the members' use cases.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, request
from pydantic import TypeAdapter, ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    Error,
    ETag,
    Filter,
    Group,
    InvalidSyntaxException,
    NotImplementedException,
    Patch,
    PatchOp,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    User,
)
from werkzeug.exceptions import HTTPException

from idp_bridge import audit, jsontext
from idp_bridge.audit import Actor
from idp_bridge.errors import (
    AlreadyExists,
    BadRequest,
    BridgeError,
    Forbidden,
    LastOwner,
    NotFound,
    SeatLimitReached,
    Unauthenticated,
    ValidationFailed,
    lazy_gettext,
)
from idp_bridge.models import DirectoryGroup, Member, MemberStatus, Organization
from idp_bridge.permissions import SCIM_PROVISION
from idp_bridge.services import api_keys as key_service
from idp_bridge.services import directory
from idp_bridge.services import orgs as org_service
from idp_bridge.services.api_keys import Principal
from idp_bridge.store.db import reset_write_intent, set_write_intent, transaction, writing
from idp_bridge.web.api import (
    AUTH_FAILURE_SCOPE,
    ERROR_FACES,
    _auth_failures,
    _count_auth_failure,
    _nul_at,
    bridge,
    status_for,
)

PREFIX = "/scim/v2"
SCIM_JSON = "application/scim+json"
USER = User[EnterpriseUser]
CORE_SCHEMA = str(User.__schema__)
ENTERPRISE_SCHEMA = str(EnterpriseUser.__schema__)
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAX_RESULTS = 200
# Entra sends a `remove` with the value to take out, and a path filter naming an entry yet to exist.
POLICY = ScimPolicy(remove_value_as_filter=ScimPolicy.RemoveValue.apply,
                    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)
# Kept in their own columns (or never kept: a password, groups the directory cannot write).
NOT_KEPT = frozenset({"schemas", "id", "meta", "userName", "externalId", "groups", "password"})

CONFIG = ServiceProviderConfig(
    documentation_uri=None,
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=False),
    etag=ETag(supported=False),
    authentication_schemes=[AuthenticationScheme(
        type=AuthenticationScheme.Type.oauthbearertoken, name="OAuth Bearer Token", primary=True,
        description="An idp-bridge API key of the organization holding the permission scim:provision")],
)
PROVIDER = ScimProvider(models=[User, EnterpriseUser], resource_types=[ResourceType.from_resource(USER)],
                        config=CONFIG, policy=POLICY)
# With `[scim.group_roles]` configured, Groups too.
WITH_GROUPS = ScimProvider(models=[User, EnterpriseUser, Group],
                           resource_types=[ResourceType.from_resource(USER), ResourceType.from_resource(Group)],
                           config=CONFIG, policy=POLICY)


def provider() -> ScimProvider:
    """What this deployment serves: Users, and Groups when they map to roles."""
    return WITH_GROUPS if directory.groups_served(bridge().settings) else PROVIDER


bp = Blueprint("scim", __name__, url_prefix=PREFIX + "/<org>")


@dataclass(frozen=True)
class ScimOperation:
    """One SCIM endpoint of an org; the SCIM authorization test walks these."""

    method: str
    rule: str
    endpoint: str
    summary: str

    @property
    def route(self) -> str:
        """The registered route, e.g. `POST /scim/v2/{org}/Users`: names the operation, never a URL."""
        return f"{self.method} {PREFIX}/{{org}}{self.rule}"


SCIM_OPERATIONS: list[ScimOperation] = []


@dataclass
class ScimCall:
    """What a handler gets: the unit of work, the key as the actor, and the org."""

    session: Any
    actor: Actor
    org: Organization

    @property
    def base(self) -> str:
        return f"{bridge().settings.public_url.rstrip('/')}{PREFIX}/{self.org.slug}"


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any] | None
    status: int = 200
    location: str | None = None


def scim_error(status: int, detail: str, scim_type: str | None = None) -> Response:
    """A SCIM error body (RFC 7644 §3.12)."""
    body = Error(status=status, scim_type=scim_type, detail=detail).model_dump()
    resp = Response(json.dumps(body), status=status, mimetype=SCIM_JSON)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="idp-bridge"'
    return resp


def _from_bridge(exc: BridgeError) -> Response:
    status = 400 if status_for(exc) == 422 else status_for(exc)
    scim_type: str | None = None
    if isinstance(exc, AlreadyExists):
        scim_type = "uniqueness"
    elif isinstance(exc, ValidationFailed | BadRequest):
        scim_type = "invalidValue"
    detail = exc.detail
    if isinstance(exc, ValidationFailed):
        detail = "; ".join(f"{where}: {', '.join(msgs)}" for where, msgs in exc.errors.items()) or exc.detail
    if isinstance(exc, SeatLimitReached | LastOwner):
        status = 409
    return scim_error(status, detail, scim_type)


def _from_validation(exc: ValidationError) -> Response:
    errors = Error.from_validation_errors(exc)
    first = errors[0]
    detail = "; ".join(e.detail or "" for e in errors)
    return scim_error(int(first.status or 400), detail, first.scim_type or "invalidValue")


def _from_scim(exc: SCIMException) -> Response:
    error = exc.to_error()
    return scim_error(int(error.status or 400), error.detail or str(exc), error.scim_type)


def _audit_denied(op: ScimOperation, reason: str, principal: Principal | None) -> None:
    """A refused call leaves an audit event in the key's own trail, and nothing else."""
    with writing(), transaction(bridge().sessions) as session:
        actor = principal.actor(request.remote_addr) if principal else Actor("anonymous", "", request.remote_addr)
        audit.record(session, actor, "auth.denied", org_id=principal.org_id if principal else None,
                     target_type="request", target_id=op.route, details={"reason": reason})


def _refused_over_limit() -> Response | None:
    strategy, limit, ip = _auth_failures()
    if strategy.test(limit, AUTH_FAILURE_SCOPE, ip):
        return None
    reset_at = strategy.get_window_stats(limit, AUTH_FAILURE_SCOPE, ip).reset_time
    resp = scim_error(429, "too many requests from this address failed to authenticate; try again later",
                      "tooMany")
    resp.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
    return resp


def _authorize(session: Any, org_slug: str) -> tuple[Principal, Organization]:
    """The key's principal and the org it provisions; raises with the denial's reason attached."""
    try:
        principal = key_service.authenticate(session, _presented_key())
    except Unauthenticated as exc:
        raise Denied(exc, "invalid or missing API key", None) from None
    _permitted(principal)
    try:
        org = org_service.get(session, org_slug)
    except NotFound:
        org = None
    _reaches(principal, org.id if org is not None else None)
    assert org is not None
    return principal, org


def authorize_on(connection: Any, org_slug: str, key: str | None) -> key_service.Presented:
    """_authorize() of the presented `key` with one compiled statement on the caller's connection: the key and
    the named org's id."""
    try:
        presented = key_service.authenticate_on(connection, key, org_slug)
    except Unauthenticated as exc:
        raise Denied(exc, "invalid or missing API key", None) from None
    _permitted(presented.principal)
    _reaches(presented.principal, presented.named_org_id)
    return presented


def _permitted(principal: Principal) -> None:
    if principal.platform:
        raise Denied(Forbidden(lazy_gettext("SCIM needs an API key of the organization")), "needs an org key",
                      principal)
    if not principal.may(SCIM_PROVISION):
        raise Denied(Forbidden(lazy_gettext("this API key lacks the permission %(permission)s",
                                             permission=SCIM_PROVISION)),
                      f"missing permission {SCIM_PROVISION}", principal)


def _reaches(principal: Principal, org_id: str | None) -> None:
    if org_id is None or principal.org_id != org_id:
        # The same answer for another org's slug and for no org at all.
        raise Denied(Forbidden(lazy_gettext("this API key belongs to another organization")),
                      "key of another organization", principal)


class Denied(Exception):
    def __init__(self, error: BridgeError, reason: str, principal: Principal | None) -> None:
        super().__init__(reason)
        self.error, self.reason, self.principal = error, reason, principal


def _presented_key() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


Handler = Callable[..., Answer]


def scim_operation(method: str, rule: str, *, summary: str) -> Callable[[Handler], Handler]:
    """Register a SCIM endpoint: authenticate, authorize, run in one transaction, answer SCIM.

    The common case of POST /Users is answered before the request gets here (web/scim_direct.py); whatever that
    does not finish arrives here as any request does.
    """

    def decorate(fn: Handler) -> Handler:
        op = ScimOperation(method, rule, fn.__name__, summary)
        SCIM_OPERATIONS.append(op)

        def view(org: str, **path: Any) -> Response:
            if (refused := _refused_over_limit()) is not None:
                return refused
            token = set_write_intent(method not in ("GET", "HEAD"))
            try:
                answer = _handled(fn, method, org, path)
            except Denied as denied:
                if denied.principal is None:
                    _count_auth_failure()
                _audit_denied(op, denied.reason, denied.principal)
                return _from_bridge(denied.error)
            except BridgeError as exc:
                return _from_bridge(exc)
            except ValidationError as exc:
                return _from_validation(exc)
            except SCIMException as exc:
                return _from_scim(exc)
            finally:
                reset_write_intent(token)
            return _respond(answer)

        flask_rule = re.sub(r"\{(\w+)\}", r"<\1>", rule)
        bp.add_url_rule(flask_rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return fn

    return decorate


def _handled(fn: Handler, method: str, org: str, path: dict[str, Any]) -> Answer:
    """The handler's answer, in one transaction with the key's authorization."""
    with transaction(bridge().sessions) as session:
        principal, org_row = _authorize(session, org)
        answer = fn(ScimCall(session, principal.actor(request.remote_addr), org_row), **path)
        if method not in ("GET", "HEAD"):
            key_service.touch(session, principal.key_id)
    return answer


def _respond(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status=answer.status)
    resp = Response(json.dumps(answer.body, default=str), status=answer.status, mimetype=SCIM_JSON)
    if answer.location:
        resp.headers["Location"] = answer.location
    return resp


def _body() -> Any:
    """The request's JSON object (application/scim+json or application/json)."""
    mimetype = request.mimetype
    if mimetype not in (SCIM_JSON, "application/json"):
        raise InvalidSyntaxException(detail=f"send the body as {SCIM_JSON}")
    try:
        data = jsontext.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSyntaxException(detail=f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSyntaxException(detail="the body must be a JSON object")
    if (where := _nul_at(data, "")) is not None:
        raise ValidationFailed({where or "body": [lazy_gettext("must not contain NUL (\\u0000) characters")]})
    return data


def _parameters() -> ResponseParameters[Any] | None:
    """`attributes` / `excludedAttributes` of the request; None when it has neither (nothing to restrict)."""
    given = {k: v for k, v in request.args.items() if k in ("attributes", "excludedAttributes")}
    if not given:
        return None
    return ResponseParameters[USER].model_validate(given, scim_ctx=Context.RESOURCE_QUERY_REQUEST)


def _meta(call: ScimCall, member: Member) -> dict[str, Any]:
    return {"resourceType": "User", "created": member.created_at.isoformat(),
            "lastModified": member.updated_at.isoformat(), "location": f"{call.base}/Users/{member.id}"}


def resource(call: ScimCall, member: Member) -> Any:
    """The member as a SCIM User."""
    kept = dict(member.directory or {})
    body: dict[str, Any] = {**kept, "id": member.id, "userName": member.identifier, "meta": _meta(call, member)}
    body["schemas"] = [CORE_SCHEMA, *([ENTERPRISE_SCHEMA] if ENTERPRISE_SCHEMA in kept else [])]
    if member.external_id is not None:
        body["externalId"] = member.external_id
    # `active` is the member's status whenever there is one to tell; a directory that never sent it (or
    # removed it) gets none back while the member is not deactivated.
    if member.directory is None or "active" in kept or member.status == MemberStatus.DEACTIVATED:
        body["active"] = member.status != MemberStatus.DEACTIVATED
    if member.directory is None:
        # A member invited through the API: what the directory would have written, from the member's columns.
        if member.name:
            body["displayName"] = member.name
        if member.email:
            body["emails"] = [{"value": member.email, "type": "work", "primary": True}]
    return USER.model_validate(body, scim_ctx=Context.RESOURCE_QUERY_RESPONSE, scim_policy=POLICY)


def _dump(user: Any, parameters: ResponseParameters[Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters,
                                          scim_provider=PROVIDER)
    return out


def directory_user(user: Any, dumped: dict[str, Any] | None = None) -> directory.DirectoryUser:
    """What a member takes from a SCIM User (`dumped`: its _dump(), when the caller has it)."""
    found = directory_user_from_dump(dumped if dumped is not None else _dump(user))
    emails = user.emails or []
    if (found.email is not None and emails and _holds_nothing(emails[0])
            and not any(str(e.type or "") == "work" or e.primary for e in emails)):
        # The dump leaves out an entry holding nothing, which the model offers as the first one when no entry is
        # the work or the primary one: it names no address.
        found = replace(found, email=None)
    return found


def directory_user_from_dump(dumped: dict[str, Any]) -> directory.DirectoryUser:
    """What a member takes from the _dump() of a SCIM User: the work email, else the primary one, else the first;
    the display name, else the formatted name, else the given and family names."""
    kept = {k: v for k, v in dumped.items() if k not in NOT_KEPT}
    user_name = dumped.get("userName")
    if not user_name:
        raise ValidationFailed({"userName": [lazy_gettext("is required")]})
    emails: list[dict[str, Any]] = dumped.get("emails", [])
    chosen = (next((e for e in emails if e.get("type") == "work"), None)
              or next((e for e in emails if e.get("primary")), None) or (emails[0] if emails else None))
    name = dumped.get("displayName") or ""
    if not name and (parts := dumped.get("name")) is not None:
        name = parts.get("formatted") or " ".join(p for p in (parts.get("givenName"), parts.get("familyName")) if p)
    active = dumped.get("active")
    return directory.DirectoryUser(user_name=user_name, external_id=dumped.get("externalId"), name=name[:200],
                                   email=chosen.get("value") if chosen is not None else None,
                                   active=True if active is None else bool(active), attributes=kept)


def _holds_nothing(entry: Any) -> bool:
    return all(getattr(entry, field) is None for field in type(entry).model_fields)


def _parse_user(ctx: Context) -> Any:
    return USER.model_validate(_body(), scim_ctx=ctx, scim_policy=POLICY)


@scim_operation("GET", "/ServiceProviderConfig", summary="What this service provider supports")
def service_provider_config(call: ScimCall) -> Answer:
    body = CONFIG.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body["meta"] = {"resourceType": "ServiceProviderConfig", "location": f"{call.base}/ServiceProviderConfig"}
    return Answer(body)


def _listed(items: list[dict[str, Any]]) -> Answer:
    return Answer({"schemas": [LIST_SCHEMA], "totalResults": len(items), "startIndex": 1,
                   "itemsPerPage": len(items), "Resources": items})


def _resource_types(call: ScimCall) -> list[dict[str, Any]]:
    out = []
    for resource_type in provider().resource_types:
        body = resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        body["meta"] = {"resourceType": "ResourceType", "location": f"{call.base}/ResourceTypes/{resource_type.id}"}
        out.append(body)
    return out


def _schemas(call: ScimCall) -> list[dict[str, Any]]:
    out = []
    for schema in provider().schemas:
        body = schema.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        body["meta"] = {"resourceType": "Schema", "location": f"{call.base}/Schemas/{schema.id}"}
        out.append(body)
    return out


@scim_operation("GET", "/ResourceTypes", summary="The resource types served")
def resource_types(call: ScimCall) -> Answer:
    return _listed(_resource_types(call))


@scim_operation("GET", "/ResourceTypes/{name}", summary="One resource type")
def resource_type(call: ScimCall, name: str) -> Answer:
    for body in _resource_types(call):
        if body["id"] == name:
            return Answer(body)
    raise NotFound(lazy_gettext("no resource type %(name)s", name=name))


@scim_operation("GET", "/Schemas", summary="The schemas served")
def schemas(call: ScimCall) -> Answer:
    return _listed(_schemas(call))


@scim_operation("GET", "/Schemas/{schema_id}", summary="One schema")
def schema(call: ScimCall, schema_id: str) -> Answer:
    for body in _schemas(call):
        if body["id"] == schema_id:
            return Answer(body)
    raise NotFound(lazy_gettext("no schema %(id)s", id=schema_id))


@scim_operation("GET", "/Users", summary="Users, filtered and paged")
def list_users(call: ScimCall) -> Answer:
    query = SearchRequest[USER].model_validate(
        {k: v for k, v in request.args.items() if k in ("filter", "startIndex", "count", "attributes",
                                                          "excludedAttributes")},
        scim_ctx=Context.SEARCH_REQUEST, scim_policy=POLICY)
    return _search(call, query)


def _search(call: ScimCall, query: SearchRequest[Any]) -> Answer:
    count = MAX_RESULTS if query.count is None else min(query.count, MAX_RESULTS)
    flt = query.filter
    page = directory.search(call.session, call.org, flt.ast if flt is not None else None,
                            start_index=query.start_index or 1, count=count,
                            matches=lambda m: bool(flt is not None and flt.match(resource(call, m))))
    items = [_dump(resource(call, m), query) for m in page.items]
    return Answer({"schemas": [LIST_SCHEMA], "totalResults": page.total, "startIndex": query.start_index or 1,
                   "itemsPerPage": len(items), "Resources": items})


@scim_operation("POST", "/Users/.search", summary="Users, filtered and paged (RFC 7644 §3.4.3)")
def search_users(call: ScimCall) -> Answer:
    query = SearchRequest[USER].model_validate(_body(), scim_ctx=Context.SEARCH_REQUEST, scim_policy=POLICY)
    return _search(call, query)


@scim_operation("POST", "/.search", summary="A search across resource types: not supported")
def search_everything(call: ScimCall) -> Answer:
    raise NotImplementedException(detail="search Users at /Users/.search")


def created_body(location: str, member: Any, dumped: dict[str, Any]) -> dict[str, Any]:
    """_dump(resource(call, member)) of a member just created, INVITED, at `location`, from the user whose _dump()
    is `dumped`, without validating the resource again: its attributes in their order, with the ones the service
    provider sets (id, meta, userName) in theirs. tests/test_scim.py holds the two equal."""
    body: dict[str, Any] = {"schemas": dumped["schemas"], "id": member.id}
    if member.external_id is not None:
        body["externalId"] = member.external_id
    # As the dump of the validated meta writes them (JSON mode: pydantic's own form of a time).
    body["meta"] = {"resourceType": "User", "created": _TIME.dump_python(member.created_at, mode="json"),
                    "lastModified": _TIME.dump_python(member.updated_at, mode="json"),
                    "location": location}
    body["userName"] = member.identifier
    body.update((k, v) for k, v in dumped.items() if k not in NOT_KEPT)
    return body


_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)



@scim_operation("POST", "/Users", summary="Create a user: an INVITED member with its invitation")
def create_user(call: ScimCall) -> Answer:
    user = _parse_user(Context.RESOURCE_CREATION_REQUEST)
    member = directory.create(call.session, bridge(), call.actor, call.org, directory_user(user))
    return Answer(_dump(resource(call, member), _parameters()), 201, f"{call.base}/Users/{member.id}")


@scim_operation("GET", "/Users/{member_id}", summary="One user")
def get_user(call: ScimCall, member_id: str) -> Answer:
    member = directory.get(call.session, call.org, member_id)
    return Answer(_dump(resource(call, member), _parameters()))


@scim_operation("PUT", "/Users/{member_id}", summary="Replace a user")
def replace_user(call: ScimCall, member_id: str) -> Answer:
    user = _parse_user(Context.RESOURCE_REPLACEMENT_REQUEST)
    member = directory.replace(call.session, bridge().settings, call.actor, call.org, member_id,
                               directory_user(user))
    return Answer(_dump(resource(call, member), _parameters()))


@scim_operation("PATCH", "/Users/{member_id}", summary="Change a user (RFC 7644 PATCH)")
def patch_user(call: ScimCall, member_id: str) -> Answer:
    patch = PatchOp[USER].model_validate(_body(), scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY)
    member = directory.get(call.session, call.org, member_id)
    user = resource(call, member)
    patch.patch(user, POLICY)
    member = directory.replace(call.session, bridge().settings, call.actor, call.org, member_id,
                               directory_user(user))
    return Answer(_dump(resource(call, member), _parameters()))


@scim_operation("DELETE", "/Users/{member_id}", summary="Delete a user: the member is removed")
def delete_user(call: ScimCall, member_id: str) -> Answer:
    directory.remove(call.session, bridge().settings, call.actor, call.org, member_id)
    return Answer(None, 204)


# As long as the column that keeps it.
MAX_MEMBER_DISPLAY = 256


def group_resource(call: ScimCall, group: DirectoryGroup) -> Any:
    """A directory group as a SCIM Group."""
    body: dict[str, Any] = {
        "schemas": [str(Group.__schema__)], "id": group.id, "displayName": group.display_name,
        "members": [{"value": m, "type": "User", "$ref": f"{call.base}/Users/{m}",
                     **({"display": display} if display is not None else {})}
                    for m, display in directory.members_of(call.session, group)],
        "meta": {"resourceType": "Group", "created": group.created_at.isoformat(),
                 "lastModified": group.updated_at.isoformat(), "location": f"{call.base}/Groups/{group.id}"}}
    if group.external_id is not None:
        body["externalId"] = group.external_id
    return Group.model_validate(body, scim_ctx=Context.RESOURCE_QUERY_RESPONSE, scim_policy=POLICY)


def group_input(group: Any) -> directory.DirectoryGroupInput:
    if not group.display_name:
        raise ValidationFailed({"displayName": [lazy_gettext("is required")]})
    members = [m for m in group.members or [] if m.value]
    too_long = [m.value for m in members if m.display is not None and len(m.display) > MAX_MEMBER_DISPLAY]
    if too_long:
        raise ValidationFailed({"members": [lazy_gettext("the display of %(id)s is longer than %(most)s characters",
                                                         id=v, most=MAX_MEMBER_DISPLAY) for v in too_long]})
    return directory.DirectoryGroupInput(display_name=group.display_name, external_id=group.external_id,
                                         member_ids=[m.value for m in members],
                                         displays={m.value: m.display for m in members if m.display is not None})


def _group_dump(group: Any, parameters: ResponseParameters[Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = group.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
                                           response_parameters=parameters, scim_provider=WITH_GROUPS)
    return out


@scim_operation("GET", "/Groups", summary="Groups (served when [scim.group_roles] is configured)")
def list_groups(call: ScimCall) -> Answer:
    groups = directory.list_groups(call.session, bridge().settings, call.org)
    query = SearchRequest[Group].model_validate(
        {k: v for k, v in request.args.items() if k in ("filter", "startIndex", "count", "attributes",
                                                          "excludedAttributes")},
        scim_ctx=Context.SEARCH_REQUEST, scim_policy=POLICY)
    found = [g for g in (group_resource(call, row) for row in groups)
             if query.filter is None or query.filter.match(g)]
    start = query.start_index or 1
    count = MAX_RESULTS if query.count is None else min(query.count, MAX_RESULTS)
    page = found[start - 1:start - 1 + max(count, 0)]
    return Answer({"schemas": [LIST_SCHEMA], "totalResults": len(found), "startIndex": start,
                   "itemsPerPage": len(page), "Resources": [_group_dump(g, query) for g in page]})


@scim_operation("POST", "/Groups", summary="Create a group; its members take the role it maps to")
def create_group(call: ScimCall) -> Answer:
    data = Group.model_validate(_body(), scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=POLICY)
    group = directory.create_group(call.session, bridge().settings, call.actor, call.org, group_input(data))
    return Answer(_group_dump(group_resource(call, group), _group_parameters()), 201,
                  f"{call.base}/Groups/{group.id}")


def _group_parameters() -> ResponseParameters[Any]:
    return ResponseParameters[Group].model_validate(
        {k: v for k, v in request.args.items() if k in ("attributes", "excludedAttributes")},
        scim_ctx=Context.RESOURCE_QUERY_REQUEST)


@scim_operation("GET", "/Groups/{group_id}", summary="One group")
def get_group(call: ScimCall, group_id: str) -> Answer:
    group = directory.get_group(call.session, bridge().settings, call.org, group_id)
    return Answer(_group_dump(group_resource(call, group), _group_parameters()))


@scim_operation("PUT", "/Groups/{group_id}", summary="Replace a group")
def replace_group(call: ScimCall, group_id: str) -> Answer:
    directory.get_group(call.session, bridge().settings, call.org, group_id)
    data = Group.model_validate(_body(), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST, scim_policy=POLICY)
    group = directory.replace_group(call.session, bridge().settings, call.actor, call.org, group_id,
                                    group_input(data))
    return Answer(_group_dump(group_resource(call, group), _group_parameters()))


@scim_operation("PATCH", "/Groups/{group_id}", summary="Change a group's name or members (RFC 7644 PATCH)")
def patch_group(call: ScimCall, group_id: str) -> Answer:
    row = directory.get_group(call.session, bridge().settings, call.org, group_id)
    patch = PatchOp[Group].model_validate(_body(), scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY)
    current = group_resource(call, row)
    patch.patch(current, POLICY)
    group = directory.replace_group(call.session, bridge().settings, call.actor, call.org, group_id,
                                    group_input(current))
    return Answer(_group_dump(group_resource(call, group), _group_parameters()))


@scim_operation("DELETE", "/Groups/{group_id}", summary="Delete a group; its members' roles follow")
def delete_group(call: ScimCall, group_id: str) -> Answer:
    directory.remove_group(call.session, bridge().settings, call.actor, call.org, group_id)
    return Answer(None, 204)


def http_error(exc: HTTPException) -> Response:
    """Unknown SCIM paths and methods answer SCIM errors too."""
    return scim_error(exc.code or 500, exc.description or exc.name or "error")


def install(app: Flask) -> None:
    """Register the SCIM blueprint; HTTP errors under its prefix become SCIM errors."""
    app.register_blueprint(bp)
    app.extensions.setdefault(ERROR_FACES, {})[PREFIX + "/"] = http_error
