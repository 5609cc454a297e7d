"""The e2e harness itself: a real OP, Chromium and an authlib client, without our app."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet, KeySetSerialization
from joserfc.jws import JWSRegistry
from playwright.sync_api import Browser, Page

from tests.e2e.browser import LOGIN_INPUT, login_error, sign_in
from tests.e2e.conftest import PAGE_TIMEOUT_MS
from tests.e2e.oidc_op import ORGANIZATIONS, EntraOP, OPAccount, OPClient, OpenIDProvider

pytestmark = pytest.mark.e2e

CLIENT_ID = "idp-bridge-test"
CLIENT_SECRET = "s3cret-for-tests-only"
CALLBACK_TIMEOUT_S = 20.0

ALICE = OPAccount(
    login="alice",
    sub="sub-alice-0001",
    email="alice@example.com",
    name="Alice Example",
    extra_claims={"hd": "example.com", "tid": "tenant-1", "oid": "oid-alice", "xms_edov": True},
)
BOB = OPAccount(login="bob", sub="sub-bob-0002", email="bob@example.org", name="Bob Example")


class RedirectCatcher:
    """A loopback HTTP server that records the query of every request to /cb."""

    def __init__(self) -> None:
        self.received: queue.Queue[dict[str, str]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/cb":
                    received.put(dict(parse_qsl(url.query)))
                body = b"caught"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def redirect_uri(self) -> str:
        """Return the callback URL to register at the OP."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/cb"

    def wait(self, timeout: float = CALLBACK_TIMEOUT_S) -> dict[str, str]:
        """Return the next callback's query parameters, failing after `timeout` seconds."""
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no redirect reached {self.redirect_uri} within {timeout:.0f}s")

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class AuthRequest:
    """An authorization request in flight: its URL and the secrets to finish it."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@pytest.fixture
def catcher() -> Iterator[RedirectCatcher]:
    """Yield a running redirect catcher."""
    server = RedirectCatcher()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def op(catcher: RedirectCatcher) -> Iterator[OpenIDProvider]:
    """Yield an OP with one client redirecting to the catcher, and accounts alice and bob."""
    client = OPClient(CLIENT_ID, CLIENT_SECRET, [catcher.redirect_uri])
    with OpenIDProvider(clients=[client], accounts=[ALICE, BOB]) as provider:
        yield provider


def oauth_session(redirect_uri: str) -> OAuth2Session:
    """Return an authlib client set up as a confidential OIDC relying party with PKCE."""
    return OAuth2Session(
        CLIENT_ID,
        CLIENT_SECRET,
        scope="openid email profile",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )


def start_authorization(session: OAuth2Session, op: OpenIDProvider, **params: str) -> AuthRequest:
    """Build an authorization URL with fresh state, nonce and PKCE verifier."""
    code_verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = session.create_authorization_url(
        op.authorization_endpoint,
        state=generate_token(24),
        code_verifier=code_verifier,
        nonce=nonce,
        **params,
    )
    return AuthRequest(url=url, state=state, nonce=nonce, code_verifier=code_verifier)


def finish_authorization(
    session: OAuth2Session, op: OpenIDProvider, request: AuthRequest, callback: dict[str, str]
) -> dict[str, Any]:
    """Check the callback, redeem the code and return the validated ID token claims."""
    assert callback.get("state") == request.state
    assert callback.get("iss") == op.issuer  # RFC 9207 issuer identification
    assert "code" in callback, callback
    token = session.fetch_token(op.token_endpoint, code=callback["code"], code_verifier=request.code_verifier)
    return validate_id_token(op, token, request.nonce)


def validate_id_token(op: OpenIDProvider, token: dict[str, Any], nonce: str) -> dict[str, Any]:
    """Verify the ID token's RS256 signature against the JWKS and its OIDC claims."""
    # authlib verifies ID tokens this way itself (joserfc + authlib.oidc.core claims).
    keys = KeySet.import_key_set(cast(KeySetSerialization, op.jwks()))
    decoded = jwt.decode(token["id_token"], keys, registry=JWSRegistry(algorithms=["RS256"]))
    assert decoded.header["alg"] == "RS256"
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {
            "iss": {"essential": True, "values": [op.issuer]},
            "aud": {"essential": True, "values": [CLIENT_ID]},
            "email": {"essential": True},
        },
        {"nonce": nonce, "client_id": CLIENT_ID, "access_token": token["access_token"]},
    )
    claims.validate(leeway=30)
    return dict(claims)


def test_signing_in_through_chromium_yields_a_verified_id_token_with_the_account_claims(
    op: OpenIDProvider, catcher: RedirectCatcher, new_page: Page
) -> None:
    session = oauth_session(catcher.redirect_uri)
    request = start_authorization(session, op, login_hint=ALICE.login)

    new_page.goto(request.url)
    assert new_page.locator(LOGIN_INPUT).input_value() == ALICE.login
    sign_in(new_page, ALICE.login)
    claims = finish_authorization(session, op, request, catcher.wait())

    assert claims["sub"] == ALICE.sub
    assert claims["nonce"] == request.nonce
    assert claims["email"] == ALICE.email
    assert claims["email_verified"] is True
    assert claims["name"] == ALICE.name
    for name, value in ALICE.extra_claims.items():
        assert claims[name] == value
    sent = op.authorization_requests()[-1]
    assert sent["code_challenge_method"] == "S256"
    assert sent["login_hint"] == ALICE.login


@pytest.mark.parametrize("prompt", ["select_account", "login"])
def test_a_prompt_shows_the_login_form_despite_a_session_and_switches_to_another_account(
    op: OpenIDProvider, catcher: RedirectCatcher, new_page: Page, prompt: str
) -> None:
    session = oauth_session(catcher.redirect_uri)
    first = start_authorization(session, op)
    new_page.goto(first.url)
    sign_in(new_page, ALICE.login)
    assert finish_authorization(session, op, first, catcher.wait())["sub"] == ALICE.sub

    second = start_authorization(session, op, prompt=prompt)
    new_page.goto(second.url)
    new_page.locator(LOGIN_INPUT).wait_for()
    assert "/interaction/" in new_page.url
    assert catcher.received.empty()
    sign_in(new_page, BOB.login)
    claims = finish_authorization(session, op, second, catcher.wait())

    assert claims["sub"] == BOB.sub
    assert claims["email"] == BOB.email


def test_an_unknown_login_shows_an_error_and_does_not_redirect(
    op: OpenIDProvider, catcher: RedirectCatcher, new_page: Page
) -> None:
    session = oauth_session(catcher.redirect_uri)
    request = start_authorization(session, op)
    new_page.goto(request.url)

    sign_in(new_page, "mallory")
    new_page.locator("#error").wait_for()

    assert "Unknown account" in (login_error(new_page) or "")
    assert new_page.url.startswith(op.issuer)
    assert new_page.locator(LOGIN_INPUT).is_visible()
    assert catcher.received.empty()


CONTOSO = "3f2a6b1e-7c44-4d7a-9a51-0c3e5b9d2f10"
FABRIKAM = "b7e1c0d2-58a9-4f6b-8e3d-91a4c2f7e605"
CARA = OPAccount(login="cara", sub="pairwise-cara", name="Cara Contoso", extra_claims={
    "tid": CONTOSO, "oid": "oid-cara", "email": "cara@contoso.test", "xms_edov": True})
FRED = OPAccount(login="fred", sub="pairwise-fred", name="Fred Fabrikam", extra_claims={
    "tid": FABRIKAM, "oid": "oid-fred", "email": "cara@contoso.test"})


@pytest.fixture
def entra(catcher: RedirectCatcher) -> Iterator[EntraOP]:
    """Yield the OP acting as Entra for Contoso and Fabrikam, one client redirecting to the catcher."""
    client = OPClient(CLIENT_ID, CLIENT_SECRET, [catcher.redirect_uri])
    with EntraOP(clients=[client], accounts=[CARA, FRED], tenants=[CONTOSO, FABRIKAM]) as provider:
        yield provider


@pytest.fixture
def tls_page(chromium: Browser) -> Iterator[Page]:
    """A page that accepts the throwaway CA's certificate (the browser does not know that CA)."""
    context = chromium.new_context(ignore_https_errors=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_entra_stand_in_serves_https_and_each_tenants_discovery_as_entra_does(entra: EntraOP) -> None:
    assert entra.authority.startswith("https://127.0.0.1:")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(entra.discovery_url_of(CONTOSO), timeout=5)
    for tenant in (CONTOSO, FABRIKAM):
        doc = requests.get(entra.discovery_url_of(tenant), timeout=5, verify=entra.ca_file).json()
        assert doc["issuer"] == f"{entra.authority}/{tenant}/v2.0"
        assert doc["authorization_endpoint"].startswith(f"{entra.authority}/{tenant}/v2.0/")
        assert "authorization_response_iss_parameter_supported" not in doc
    multi = requests.get(entra.discovery_url_of(ORGANIZATIONS), timeout=5, verify=entra.ca_file).json()
    assert multi["issuer"] == f"{entra.authority}/{{tenantid}}/v2.0"
    assert multi["token_endpoint"].startswith(f"{entra.authority}/{ORGANIZATIONS}/v2.0/")
    assert "authorization_response_iss_parameter_supported" not in multi
    # One signing key for every tenant, as Entra's.
    keys = {requests.get(requests.get(entra.discovery_url_of(t), timeout=5, verify=entra.ca_file).json()["jwks_uri"],
                         timeout=5, verify=entra.ca_file).text for t in (CONTOSO, FABRIKAM, ORGANIZATIONS)}
    assert len(keys) == 1


def entra_claims(entra: EntraOP, session: OAuth2Session, request: AuthRequest, callback: dict[str, str],
                 token_endpoint: str) -> dict[str, Any]:
    """Redeem the code; return the ID token's claims, its signature, nonce and audience checked."""
    assert callback.get("state") == request.state
    assert "iss" not in callback  # Entra does not send RFC 9207's iss
    token = session.fetch_token(token_endpoint, code=callback["code"], code_verifier=request.code_verifier,
                                verify=entra.ca_file)
    keys = KeySet.import_key_set(cast(KeySetSerialization, entra.jwks()))
    decoded = jwt.decode(token["id_token"], keys, registry=JWSRegistry(algorithms=["RS256"]))
    assert decoded.claims["nonce"] == request.nonce
    assert decoded.claims["aud"] == CLIENT_ID
    return dict(decoded.claims)


def test_signing_in_at_organizations_yields_an_id_token_of_the_accounts_own_tenant(
    entra: EntraOP, catcher: RedirectCatcher, tls_page: Page
) -> None:
    session = oauth_session(catcher.redirect_uri)
    for account, tenant in ((CARA, CONTOSO), (FRED, FABRIKAM)):
        request = start_authorization(session, entra, prompt="select_account")
        tls_page.goto(request.url)
        sign_in(tls_page, account.login)
        claims = entra_claims(entra, session, request, catcher.wait(), entra.token_endpoint)

        assert claims["iss"] == f"{entra.authority}/{tenant}/v2.0"
        assert (claims["sub"], claims["tid"], claims["oid"], claims["email"]) == (
            account.sub, tenant, account.extra_claims["oid"], "cara@contoso.test")
        assert "email_verified" not in claims
        assert claims.get("xms_edov") == account.extra_claims.get("xms_edov")


def test_a_tenants_own_endpoint_signs_in_only_its_accounts(
    entra: EntraOP, catcher: RedirectCatcher, tls_page: Page
) -> None:
    session = oauth_session(catcher.redirect_uri)
    contoso = requests.get(entra.discovery_url_of(CONTOSO), timeout=5, verify=entra.ca_file).json()
    verifier, nonce = generate_token(64), generate_token(24)
    url, state = session.create_authorization_url(contoso["authorization_endpoint"], state=generate_token(24),
                                                  code_verifier=verifier, nonce=nonce)
    tls_page.goto(url)
    sign_in(tls_page, FRED.login)
    tls_page.locator("#error").wait_for()
    assert "Unknown account" in (login_error(tls_page) or "")
    assert catcher.received.empty()

    sign_in(tls_page, CARA.login)
    claims = entra_claims(entra, session, AuthRequest(url, state, nonce, verifier), catcher.wait(),
                          contoso["token_endpoint"])
    assert (claims["iss"], claims["tid"]) == (f"{entra.authority}/{CONTOSO}/v2.0", CONTOSO)
