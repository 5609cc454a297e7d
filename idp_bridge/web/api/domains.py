"""Verified domains and join requests (SPEC §10)."""

from __future__ import annotations

from flask import request

from idp_bridge.inputs import DomainCreate, parse
from idp_bridge.permissions import ORGS_MANAGE, USERS_INVITE, USERS_READ
from idp_bridge.schemas import (
    DomainList,
    DomainOut,
    JoinRequestList,
    JoinRequestOut,
    domain_out,
    join_request_out,
)
from idp_bridge.services import domains, joining
from idp_bridge.web.api import Call, Query, operation
from idp_bridge.web.api.params import CURSOR, LIMIT, page_args


@operation("POST", "/orgs/{org}/domains", summary="Claim a domain; publish the TXT challenge, then verify",
           tag="domains", permission=ORGS_MANAGE, body=DomainCreate, response=DomainOut, status=201,
           errors=(409, 422))
def add_domain(call: Call) -> DomainOut:
    org = call.must_org()
    row = domains.add(call.session, call.actor, org, parse(DomainCreate, call.body).domain)
    return domain_out(row, org.slug, domains.challenge_value(row))


@operation("GET", "/orgs/{org}/domains", summary="List the organization's domains", tag="domains",
           permission=ORGS_MANAGE, response=DomainList)
def list_domains(call: Call) -> DomainList:
    org = call.must_org()
    return DomainList(items=[domain_out(row, org.slug, domains.challenge_value(row))
                             for row in domains.list_for(call.session, org)], next_cursor=None)


@operation("GET", "/orgs/{org}/domains/{domain_id}", summary="Read one domain", tag="domains",
           permission=ORGS_MANAGE, response=DomainOut, errors=(404,))
def get_domain(call: Call, domain_id: str) -> DomainOut:
    org = call.must_org()
    row = domains.get(call.session, org, domain_id)
    return domain_out(row, org.slug, domains.challenge_value(row))


@operation("POST", "/orgs/{org}/domains/{domain_id}/verify",
           summary="Look the TXT challenge up: verified, or 409 naming the values found", tag="domains",
           permission=ORGS_MANAGE, response=DomainOut, errors=(404, 409), reads_first=True)
def verify_domain(call: Call, domain_id: str) -> DomainOut:
    org = call.must_org()
    challenge = domains.challenge_for(call.session, org, domain_id)
    with call.outside_transaction():
        finding = domains.look_up(call.bridge.txt_lookup, challenge)
    row = domains.record(call.session, call.actor, org, challenge, finding)
    return domain_out(row, org.slug, domains.challenge_value(row))


@operation("DELETE", "/orgs/{org}/domains/{domain_id}", summary="Remove a domain", tag="domains",
           permission=ORGS_MANAGE, status=204, errors=(404,))
def delete_domain(call: Call, domain_id: str) -> None:
    domains.delete(call.session, call.actor, call.must_org(), domain_id)


@operation("GET", "/orgs/{org}/join-requests", summary="List join requests, newest first", tag="join-requests",
           permission=USERS_READ, response=JoinRequestList, query=[
               Query("status", {"type": "string", "enum": ["PENDING", "APPROVED", "DECLINED"]}, "Only this status."),
               LIMIT, CURSOR])
def list_join_requests(call: Call) -> JoinRequestList:
    org = call.must_org()
    page = joining.search_requests(call.session, org, status=request.args.get("status"),
                                   **page_args())  # type: ignore[arg-type]
    return JoinRequestList(items=[join_request_out(r, org.slug) for r in page.items], next_cursor=page.next_cursor)


@operation("POST", "/orgs/{org}/join-requests/{request_id}/approve",
           summary="Approve: an ACTIVE member with the default role (seat limit holds)", tag="join-requests",
           permission=USERS_INVITE, response=JoinRequestOut, errors=(404, 409))
def approve_join_request(call: Call, request_id: str) -> JoinRequestOut:
    org = call.must_org()
    row = joining.approve(call.session, call.bridge.settings, call.actor, org, request_id)
    return join_request_out(row, org.slug)


@operation("POST", "/orgs/{org}/join-requests/{request_id}/decline", summary="Decline a join request",
           tag="join-requests", permission=USERS_INVITE, response=JoinRequestOut, errors=(404, 409))
def decline_join_request(call: Call, request_id: str) -> JoinRequestOut:
    org = call.must_org()
    return join_request_out(joining.decline(call.session, call.actor, org, request_id), org.slug)
