"""Provider rules (SPEC §3 rules 2-6): Entra tenant and nOAuth, Google hd and email_verified, Keycloak bound
user, the `link` match policy, and identities already bound to another member."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import (
    ChangeNotificationSource,
    IdentityCheck,
    InviteTarget,
    Provider,
    Provisioner,
    RealmEventSource,
    SecurityEventSource,
)
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.fakes.oidc import FakeOP
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import MS, OTHER_TENANT, PERSONAL, TENANT, OPs, auth_params, finish, snapshot, start
from tests.pages.test_redeem_rules import assert_unchanged, login


def entra_claims(tid: str, **over: Any) -> dict[str, Any]:
    return {"iss": f"{MS}/{tid}/v2.0", "tid": tid, "oid": "oid-alice", "sub": "pairwise-sub",
            "email": "alice@contoso.com", "preferred_username": "alice@contoso.com", **over}


def test_an_entra_tenant_invite_binds_the_identity_on_tid_and_oid(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@contoso.com", provider="entra", tenant_id=TENANT)
    url = start(client, invite["link"])
    assert auth_params(url)["domain_hint"] == TENANT

    resp = finish(client, "entra", ops.entra.authorize(url, entra_claims(TENANT)))

    assert resp.status_code == 303
    with transaction(bridge.sessions) as session:
        row = session.get(Invite, invite["id"])
        assert row is not None
        (identity,) = row.member.identities
        assert (identity.subject, identity.tenant_id, identity.issuer) == ("oid-alice", TENANT, f"{MS}/{TENANT}/v2.0")


def test_an_entra_token_from_another_tenant_carrying_the_invitees_email_is_refused(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@contoso.com", provider="entra", tenant_id=TENANT)

    resp = login(client, ops.entra, invite["link"], "entra", entra_claims(OTHER_TENANT))

    assert resp.status_code == 403
    assert "different Microsoft organization" in resp.get_data(as_text=True)
    assert_unchanged(bridge, invite["id"], "wrong_tenant")


def test_an_entra_email_from_an_unverified_domain_does_not_count_without_a_tenant_on_the_invite(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@contoso.com", provider="entra")

    resp = login(client, ops.entra, invite["link"], "entra", entra_claims(OTHER_TENANT))

    assert resp.status_code == 403
    assert_unchanged(bridge, invite["id"], "email_not_verified")


def test_an_entra_email_with_xms_edov_true_counts_from_any_tenant(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@contoso.com", provider="entra")

    resp = login(client, ops.entra, invite["link"], "entra", entra_claims(OTHER_TENANT, xms_edov=True))

    assert resp.status_code == 303
    assert snapshot(bridge, invite["id"]).invite_status == "ACCEPTED"


def test_an_entra_token_whose_issuer_names_another_tenant_than_its_tid_is_refused(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@contoso.com", provider="entra", tenant_id=TENANT)

    resp = login(client, ops.entra, invite["link"], "entra",
                 entra_claims(TENANT, iss=f"{MS}/{OTHER_TENANT}/v2.0"))

    assert resp.status_code == 400
    assert_unchanged(bridge, invite["id"], "wrong_issuer")


def test_a_personal_microsoft_account_cannot_redeem_a_tenant_invite(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@contoso.com", provider="entra", tenant_id=TENANT)

    resp = login(client, ops.entra, invite["link"], "entra", entra_claims(PERSONAL))

    assert resp.status_code == 403
    assert "personal Microsoft account" in resp.get_data(as_text=True)
    assert_unchanged(bridge, invite["id"], "personal_account")


def test_a_google_workspace_invite_sends_hd_and_accepts_the_short_issuer_form(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="google", hosted_domain="example.com")
    url = start(client, invite["link"])
    assert auth_params(url)["hd"] == "example.com"

    resp = finish(client, "google", ops.google.authorize(url, {
        "iss": "accounts.google.com", "sub": "g-1", "email": "alice@example.com", "email_verified": True,
        "hd": "example.com"}))

    assert resp.status_code == 303


@pytest.mark.parametrize("verified", [False, "false", None])
def test_google_email_verified_false_or_the_string_false_is_refused(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge, verified: Any) -> None:
    invite = api.invite("alice@example.com", provider="google")

    resp = login(client, ops.google, invite["link"], "google",
                 {"sub": "g-1", "email": "alice@example.com", "email_verified": verified},
                 userinfo={"sub": "g-1", "email": "alice@example.com"})

    assert resp.status_code == 403
    assert_unchanged(bridge, invite["id"], "email_not_verified")


@pytest.mark.parametrize("hd", [None, "evil.example", "example.com.evil.test"])
def test_google_hd_claim_missing_or_different_is_refused(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge, hd: str | None) -> None:
    invite = api.invite("alice@example.com", provider="google", hosted_domain="example.com")

    resp = login(client, ops.google, invite["link"], "google",
                 {"sub": "g-1", "email": "alice@example.com", "email_verified": True, "hd": hd},
                 userinfo={"sub": "g-1"})

    assert resp.status_code == 403
    assert_unchanged(bridge, invite["id"], "wrong_domain")


def bind_keycloak_user(bridge: Bridge, invite_id: str, user_id: str) -> None:
    with transaction(bridge.sessions) as session:
        row = session.get(Invite, invite_id)
        assert row is not None
        row.idp_user_id = user_id


def test_keycloak_invites_bound_to_a_user_accept_only_that_users_sub(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="keycloak", keycloak_idp="corp-saml")
    bind_keycloak_user(bridge, invite["id"], "kc-user-1")
    url = start(client, invite["link"])
    assert auth_params(url)["kc_idp_hint"] == "corp-saml"

    impostor = finish(client, "keycloak", ops.keycloak.authorize(
        url, {"sub": "kc-user-2", "email": "alice@example.com", "email_verified": True}))
    assert impostor.status_code == 403
    assert_unchanged(bridge, invite["id"], "different_account")

    resp = login(client, ops.keycloak, invite["link"], "keycloak",
                 {"sub": "kc-user-1", "email": "alice@example.com", "email_verified": True})
    assert resp.status_code == 303


def test_the_link_match_policy_accepts_any_account_for_a_non_email_identifier(
        ops: OPs, bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "lab", match="link")
    api = Api(client, make_key(bridge, "lab"), org="lab")
    invite = api.invite("operator-7", provider="oidc", notification_email="ops@example.com")

    resp = login(client, ops.oidc, invite["link"], "oidc", {"sub": "anyone", "email_verified": False})

    assert resp.status_code == 200 and "Welcome to Lab" in resp.get_data(as_text=True)
    assert snapshot(bridge, invite["id"]).member_status == "ACTIVE"


def test_an_any_invite_with_several_providers_asks_which_one(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com")
    token = invite["link"].rsplit("/", 1)[1]

    choice = client.get(f"/invite/{token}/login")
    assert choice.status_code == 200
    body = choice.get_data(as_text=True)
    assert all(f"Sign in with {label}" in body for label in ("Google", "Microsoft", "Keycloak"))

    url = start(client, invite["link"], "?provider=google")
    assert finish(client, "google", ops.google.authorize(
        url, {"sub": "g", "email": "alice@example.com", "email_verified": True})).status_code == 303


def entra(tenant: str) -> Any:
    from providers.entra import EntraProvider

    return EntraProvider.from_config("entra", {"tenant": tenant, "client_id": "c", "client_secret": "s"},
                                     public_url="https://join.test")


@pytest.mark.parametrize(("tenant", "discovery_issuer", "ok"), [
    ("organizations", f"{MS}/{{tenantid}}/v2.0", True),
    ("common", f"{MS}/{{tenantid}}/v2.0", True),
    ("consumers", f"{MS}/{PERSONAL}/v2.0", True),
    ("organizations", f"{MS}/{TENANT}/v2.0", False),
    (TENANT, f"{MS}/{TENANT}/v2.0", True),
    (TENANT, f"{MS}/{OTHER_TENANT}/v2.0", False),
    (TENANT, "https://evil.test/v2.0", False),
])
def test_entra_discovery_must_name_the_configured_issuer_or_the_multi_tenant_template(
        tenant: str, discovery_issuer: str, ok: bool) -> None:
    assert entra(tenant).discovery_issuer_ok(discovery_issuer) is ok


@pytest.mark.parametrize(("tenant", "tid", "expected"), [
    ("organizations", TENANT, {f"{MS}/{TENANT}/v2.0"}),
    (TENANT, OTHER_TENANT, set()),
    ("consumers", TENANT, set()),
    ("consumers", PERSONAL, {f"{MS}/{PERSONAL}/v2.0"}),
    ("common", "not-a-guid", set()),
])
def test_entra_token_issuers_are_the_tokens_tid_substituted_and_never_a_wildcard(
        tenant: str, tid: str, expected: set[str]) -> None:
    assert entra(tenant).token_issuers({"tid": tid}) == expected


def test_keycloak_use_another_account_forces_the_login_form(
        api: Api, ops: OPs, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="keycloak")

    params = auth_params(start(client, invite["link"], "?again=1"))

    assert params["prompt"] == "login" and params["login_hint"] == "alice@example.com"


# Each built-in provider type and the protocols of the core it implements (besides Provider, which all do).
CAPABILITIES: dict[str, tuple[type[Any], ...]] = {
    "oidc": (),
    "google": (SecurityEventSource,),
    "entra": (Provisioner, ChangeNotificationSource),
    "keycloak": (Provisioner, RealmEventSource),
}


def protocol_methods(protocol: type[Any]) -> dict[str, Callable[..., Any]]:
    """The methods a protocol declares, its bases' included."""
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or klass is Protocol or not getattr(klass, "_is_protocol", False):
            continue
        found.update({name: value for name, value in vars(klass).items()
                      if callable(value) and not name.startswith("_")})
    return found


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_every_built_in_provider_has_the_protocols_methods_with_their_exact_parameters(
        ops: OPs, bridge: Bridge, name: str) -> None:
    provider = bridge.providers[name]
    for protocol in (Provider, *CAPABILITIES[name]):
        methods = protocol_methods(protocol)
        assert methods, protocol
        for method, declared in methods.items():
            implemented = getattr(type(provider), method, None)
            assert implemented is not None, f"{name} lacks {protocol.__name__}.{method}"
            assert parameters(implemented) == parameters(declared), f"{name}.{method} differs from {protocol.__name__}"


def test_a_provider_missing_a_parameter_fails_the_signature_check() -> None:
    class Drifted:
        def check_identity(self, claims: Any, target: Any) -> Any: ...

    assert parameters(Drifted.check_identity) != parameters(protocol_methods(Provider)["check_identity"])


@pytest.mark.parametrize("name", ["oidc", "google", "entra", "keycloak"])
def test_every_built_in_provider_logs_in_through_the_protocol_alone(ops: OPs, bridge: Bridge, name: str) -> None:
    provider = bridge.providers[name]
    op: FakeOP = getattr(ops, name)
    target = InviteTarget(invite_id="inv-1", org_slug="acme", identifier="alice@contoso.com",
                          email="alice@contoso.com", name="Alice", tenant_id=TENANT if name == "entra" else None)

    url = provider.authorization_url(target, state="state-1", nonce="nonce-1", code_verifier="v" * 50)
    params = auth_params(url)
    assert url.startswith(op.authorization_endpoint)
    assert (params["state"], params["nonce"], params["code_challenge_method"]) == ("state-1", "nonce-1", "S256")
    assert params["login_hint"] == "alice@contoso.com"

    claims = entra_claims(TENANT) if name == "entra" else {
        "sub": "alice-sub", "email": "alice@contoso.com", "email_verified": True}
    callback = op.authorize(url, claims)
    validated = provider.complete_login(code=callback["code"], code_verifier="v" * 50, nonce="nonce-1")
    check = provider.check_identity(validated, target, match="email")

    assert isinstance(check, IdentityCheck) and check.ok, check
    assert check.identity.provider == name
    assert check.identity.subject == ("oid-alice" if name == "entra" else "alice-sub")
    other = provider.check_identity(validated, replace(target, identifier="bob@example.com"), match="email")
    assert other.problem == "different_account"
    # These pages configure neither Keycloak provisioning nor Entra B2B invitations.
    assert provider.provisioner() is None
