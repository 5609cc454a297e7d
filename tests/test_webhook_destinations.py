"""Outbound webhooks reach public https addresses only: every non-public form is refused, at registration and at
connect time (DNS rebinding), unless webhook_allow_networks lists it; the delivery log keeps fixed reasons only."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from idp_bridge.bridge import Bridge
from idp_bridge.destinations import Destinations, Refused, Resolver
from idp_bridge.errors import ConfigError
from idp_bridge.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from idp_bridge.services import orgs
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.dnsserver import LoopbackDNS
from tests.fakes import FakeRequest, FakeResponse, serve
from tests.helpers import Api, make_key, make_org
from tests.webhooks.receiver import free_port
from webhooks.outbound.delivery import _verify

# A public address that may appear in DNS answers checked at registration; nothing here ever connects to it.
PUBLIC = "93.184.215.14"


@dataclass(frozen=True)
class Form:
    """One way to name a destination webhooks must not reach, and the network that would allow it."""

    url: str
    allow: str
    dns: dict[str, list[str]] = field(default_factory=dict)


# One table of forms; the refusal and the allow-list tests are generated from it.
FORMS: dict[str, Form] = {
    "loopback": Form("https://127.0.0.1/hooks", "127.0.0.0/8"),
    "loopback-other": Form("https://127.53.1.2:8443/hooks", "127.0.0.0/8"),
    "loopback-decimal": Form("https://2130706433/hooks", "127.0.0.0/8"),
    "loopback-hex": Form("https://0x7f000001/hooks", "127.0.0.0/8"),
    "loopback-octal": Form("https://0177.0.0.1/hooks", "127.0.0.0/8"),
    "loopback-short": Form("https://127.1/hooks", "127.0.0.0/8"),
    "loopback-dotted-hex": Form("https://0x7f.0x0.0x0.0x1/hooks", "127.0.0.0/8"),
    "loopback-full-width": Form("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hooks", "127.0.0.0/8"),
    "loopback-ideographic-dots": Form("https://127\u30020\u30020\u30021/hooks", "127.0.0.0/8"),
    "localhost": Form("https://localhost/hooks", "127.0.0.0/8"),
    "localhost-subdomain": Form("https://api.localhost./hooks", "127.0.0.0/8"),
    "ipv6-loopback": Form("https://[::1]/hooks", "::1/128"),
    "ipv6-loopback-long": Form("https://[0:0:0:0:0:0:0:1]:8443/hooks", "::1/128"),
    "ipv4-mapped": Form("https://[::ffff:127.0.0.1]/hooks", "127.0.0.0/8"),
    "ipv4-mapped-hex": Form("https://[::ffff:7f00:1]/hooks", "127.0.0.0/8"),
    "ipv4-mapped-private": Form("https://[::ffff:10.0.0.1]/hooks", "10.0.0.0/8"),
    "ipv4-compatible": Form("https://[::127.0.0.1]/hooks", "::/96"),
    "nat64-metadata": Form("https://[64:ff9b::a9fe:a9fe]/latest", "169.254.0.0/16"),
    "6to4-private": Form("https://[2002:a00:1::1]/hooks", "10.0.0.0/8"),
    "metadata": Form("https://169.254.169.254/latest/meta-data/", "169.254.0.0/16"),
    "link-local": Form("https://169.254.10.20/hooks", "169.254.0.0/16"),
    "ipv6-link-local": Form("https://[fe80::1]/hooks", "fe80::/10"),
    "ipv6-link-local-zone": Form("https://[fe80::1%25eth0]/hooks", "fe80::/10"),
    "rfc1918-10": Form("https://10.0.0.1/hooks", "10.0.0.0/8"),
    "rfc1918-172": Form("https://172.16.5.4/hooks", "172.16.0.0/12"),
    "rfc1918-192": Form("https://192.168.1.1/hooks", "192.168.0.0/16"),
    "cgnat": Form("https://100.64.0.1/hooks", "100.64.0.0/10"),
    "unique-local": Form("https://[fd12:3456::1]/hooks", "fc00::/7"),
    "multicast": Form("https://224.0.0.251/hooks", "224.0.0.0/4"),
    "ipv6-multicast": Form("https://[ff02::1]/hooks", "ff00::/8"),
    "unspecified": Form("https://0.0.0.0/hooks", "0.0.0.0/8"),
    "unspecified-short": Form("https://0/hooks", "0.0.0.0/8"),
    "ipv6-unspecified": Form("https://[::]/hooks", "::/128"),
    "broadcast": Form("https://255.255.255.255/hooks", "240.0.0.0/4"),
    "reserved": Form("https://240.0.0.1/hooks", "240.0.0.0/4"),
    "benchmarking": Form("https://198.18.0.1/hooks", "198.18.0.0/15"),
    "name-to-loopback": Form("https://internal.example.test/hooks", "127.0.0.0/8",
                             {"internal.example.test": ["127.0.0.1"]}),
    "name-with-trailing-dot": Form("https://internal.example.test./hooks", "127.0.0.0/8",
                                   {"internal.example.test": ["127.0.0.1"]}),
    "name-to-private": Form("https://db.example.test/hooks", "10.0.0.0/8", {"db.example.test": ["10.1.2.3"]}),
    "name-to-public-and-private": Form("https://mixed.example.test/hooks", "10.0.0.0/8",
                                       {"mixed.example.test": [PUBLIC, "10.0.0.7"]}),
    "name-to-ipv6-loopback": Form("https://v6.example.test/hooks", "::1/128", {"v6.example.test": ["::1"]}),
    "name-to-mapped-metadata": Form("https://meta.example.test/hooks", "169.254.0.0/16",
                                    {"meta.example.test": ["::ffff:169.254.169.254"]}),
    "idn-to-loopback": Form("https://bücher.example.test/hooks", "127.0.0.0/8",
                            {"xn--bcher-kva.example.test": ["127.0.0.1"]}),
    "http-to-public-address": Form(f"http://{PUBLIC}/hooks", f"{PUBLIC}/32"),
    "http-to-public-name": Form("http://hooks.example.test/hooks", f"{PUBLIC}/32",
                                {"hooks.example.test": [PUBLIC]}),
    "http-to-loopback": Form("http://127.0.0.1:8080/hooks", "127.0.0.0/8"),
}


@pytest.fixture
def allowed() -> list[str]:
    """webhook_allow_networks for the test: none, unless a test parametrizes it."""
    return []


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], allowed: list[str]) -> dict[str, Any]:
    settings_overrides["webhook_allow_networks"] = allowed
    return settings_overrides


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch, dns_server: LoopbackDNS) -> Iterator[list[Any]]:
    """Every socket these tests open connects to loopback, and the system resolver answers from the test's DNS
    table (so nothing, fixed or not, sends a packet off this machine); anything else fails the test."""
    elsewhere: list[Any] = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
            elsewhere.append(address)
            raise ConnectionRefusedError("tests connect to loopback only")
        connect(sock, address)

    def table_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if host is None or name == "localhost" or _literal(name):
            return getaddrinfo(host, port, *args, **kwargs)
        with dns_server.lock:
            found = dns_server.answers.get(name.rstrip(".").lower())
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [info for address in found for info in getaddrinfo(address, port, *args, **kwargs)]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", table_getaddrinfo)
    yield elsewhere
    assert elsewhere == []


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", member_limit=100)
    return Api(client, make_key(bridge))


def answer(dns_server: LoopbackDNS, table: dict[str, list[str]]) -> None:
    with dns_server.lock:
        dns_server.answers.update(table)


def assert_refused_in_fixed_words(resp: Any, url: str) -> None:
    assert resp.status_code == 422, resp.get_json()
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    [message] = resp.get_json()["errors"]["url"]
    host = url.split("//", 1)[1].split("/", 1)[0]
    # Fixed words: no address, host or resolver text comes back to the caller.
    assert not any(ch.isdigit() for ch in message) and host not in message, message


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_registering_or_moving_an_endpoint_to_a_non_public_destination_is_refused(
        api: Api, dns_server: LoopbackDNS, form: Form) -> None:
    answer(dns_server, form.dns)
    assert_refused_in_fixed_words(api.post("/webhook-endpoints", {"url": form.url, "enabled": False}), form.url)

    answer(dns_server, {"public.example.test": [PUBLIC]})
    created = api.post("/webhook-endpoints", {"url": "https://public.example.test/hooks", "enabled": False})
    assert created.status_code == 201, created.get_json()
    endpoint = created.get_json()["id"]
    assert_refused_in_fixed_words(api.patch(f"/webhook-endpoints/{endpoint}", {"url": form.url}), form.url)
    assert api.get(f"/webhook-endpoints/{endpoint}").get_json()["url"] == "https://public.example.test/hooks"


@pytest.mark.parametrize(("form", "allowed"), [(f, [f.allow]) for f in FORMS.values()], ids=FORMS.keys())
def test_a_destination_becomes_allowed_when_webhook_allow_networks_lists_its_network(
        api: Api, dns_server: LoopbackDNS, form: Form, allowed: list[str]) -> None:
    answer(dns_server, form.dns)
    # Disabled: this test registers only, so no delivery is ever sent (some answers are public addresses).
    resp = api.post("/webhook-endpoints", {"url": form.url, "enabled": False})
    assert resp.status_code == 201, resp.get_json()


def test_an_https_endpoint_on_a_public_name_or_address_is_accepted_without_any_allowed_network(
        api: Api, dns_server: LoopbackDNS) -> None:
    answer(dns_server, {"hooks.example.test": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    for url in ("https://hooks.example.test/hooks", f"https://{PUBLIC}:8443/hooks", "https://[2606:4700::1111]/x",
                "https://[::ffff:93.184.215.14]/hooks"):
        resp = api.post("/webhook-endpoints", {"url": url, "enabled": False})
        assert resp.status_code == 201, (url, resp.get_json())


def test_a_name_that_does_not_resolve_is_refused(api: Api) -> None:
    resp = api.post("/webhook-endpoints", {"url": "https://nowhere.example.test/hooks"})
    assert_refused_in_fixed_words(resp, "https://nowhere.example.test/hooks")
    assert resp.get_json()["errors"]["url"] == ["has a host name that does not resolve"]


def _notations(address: ipaddress.IPv4Address) -> list[str]:
    """Every way a URL can spell an IPv4 address that the socket layer would connect to."""
    n = int(address)
    octets = [int(o) for o in str(address).split(".")]
    v6 = ipaddress.IPv6Address
    return [str(address), str(n), hex(n), ".".join(f"0{o:o}" for o in octets), ".".join(hex(o) for o in octets),
            f"{octets[0]}.{n & 0xFFFFFF}", f"{octets[0]}.{octets[1]}.{n & 0xFFFF}",
            f"[::ffff:{address}]", f"[{v6(0xFFFF << 32 | n)}]", f"[{v6(0x64FF9B << 96 | n)}]",
            f"[{v6(0x2002 << 112 | n << 80 | 1)}]"]


# The networks RFC 6890 and its updates reserve, written out here rather than taken from the code under test.
NON_PUBLIC_V4 = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/29", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4")]
PUBLIC_V4 = [ipaddress.IPv4Network(n) for n in ("8.8.0.0/16", "93.184.0.0/16", "151.101.0.0/16", "1.1.1.0/24")]


def _in(networks: list[ipaddress.IPv4Network]) -> st.SearchStrategy[ipaddress.IPv4Address]:
    return st.sampled_from(networks).flatmap(
        lambda net: st.integers(int(net.network_address), int(net.broadcast_address)).map(ipaddress.IPv4Address))


@settings(max_examples=300, deadline=None, database=None)
@given(address=_in(NON_PUBLIC_V4), which=st.integers(min_value=0, max_value=10))
def test_every_notation_of_a_non_public_ipv4_address_is_refused_and_allowed_only_when_listed(
        address: ipaddress.IPv4Address, which: int) -> None:
    url = f"https://{_notations(address)[which]}/hooks"
    with pytest.raises(Refused):
        Destinations([], Resolver()).check_url(url)
    network = next(str(n) for n in NON_PUBLIC_V4 if address in n)
    Destinations([network], Resolver()).check_url(url)


@settings(max_examples=200, deadline=None, database=None)
@given(address=_in(PUBLIC_V4), which=st.integers(min_value=0, max_value=9))
def test_every_notation_of_a_public_ipv4_address_is_accepted_over_https_only(
        address: ipaddress.IPv4Address, which: int) -> None:
    host = _notations(address)[which]
    Destinations([], Resolver()).check_url(f"https://{host}/hooks")
    with pytest.raises(Refused):
        Destinations([], Resolver()).check_url(f"http://{host}/hooks")


def test_settings_refuse_an_allowed_network_or_a_nameserver_that_is_not_an_address() -> None:
    with pytest.raises(ConfigError):
        load_settings(overrides={"webhook_allow_networks": ["loopback"]}, environ={})
    with pytest.raises(ConfigError):
        load_settings(overrides={"dns_nameservers": ["dns.example.test"]}, environ={})
    loaded = load_settings(overrides={"webhook_allow_networks": ["127.0.0.0/8", "fd00::/8"],
                                      "dns_nameservers": ["127.0.0.1:5353", "[::1]:53", "10.0.0.2"]}, environ={})
    assert loaded.dns_nameservers == ["127.0.0.1:5353", "[::1]:53", "10.0.0.2"]


def _drain(worker: Worker, rounds: int = 5) -> None:
    for _ in range(rounds):
        worker.run_once(time_limit=30)


def _stored_text(bridge: Bridge) -> str:
    """Every row of the tables a delivery writes to (attempts, deliveries, jobs, audit), as one string."""
    with bridge.engine.connect() as conn:
        rows = [row for table in ("webhook_attempts", "webhook_deliveries", "jobs", "audit_events")
                for row in conn.execute(text(f"SELECT * FROM {table}"))]
    return json.dumps([[str(v) for v in row] for row in rows])


def test_a_name_that_rebinds_to_loopback_after_registration_is_never_connected_to(
        bridge: Bridge, api: Api, worker: Worker, dns_server: LoopbackDNS) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    answer(dns_server, {"rebind.example.test": [PUBLIC]})
    endpoint = api.post("/webhook-endpoints", {"url": f"https://rebind.example.test:{port}/hooks"})
    assert endpoint.status_code == 201, endpoint.get_json()
    # The attacker's server now answers loopback, before any delivery runs.
    answer(dns_server, {"rebind.example.test": ["127.0.0.1"]})
    asked_at_registration = dns_server.queries["rebind.example.test"]
    api.invite("first@example.com")

    _drain(worker)

    assert dns_server.queries["rebind.example.test"] > asked_at_registration
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected to the loopback port
    listener.close()
    with transaction(bridge.sessions) as session:
        attempts = list(session.scalars(select(WebhookAttempt)))
        delivery = session.scalars(select(WebhookDelivery)).one()
    assert attempts and {(a.status_code, a.error) for a in attempts} == {(None, "address not allowed")}
    assert (delivery.status, delivery.last_error) == ("pending", "address not allowed")
    log = api.get(f"/webhook-endpoints/{endpoint.get_json()['id']}/deliveries").get_json()["items"][0]
    assert log["last_error"] == "address not allowed" and log["log"][0]["error"] == "address not allowed"


def test_an_endpoint_whose_network_is_no_longer_allowed_is_not_delivered_to(
        bridge: Bridge, api: Api, worker: Worker) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    with transaction(bridge.sessions) as session:
        org = orgs.get(session, "acme")
        # Registered while a looser deployment setting allowed it.
        session.add(WebhookEndpoint(org_id=org.id, url=f"http://127.0.0.1:{listener.getsockname()[1]}/hooks",
                                    secret="whsec_" + "QUJD" * 8))
    api.invite("first@example.com")

    _drain(worker)

    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    with transaction(bridge.sessions) as session:
        errors = set(session.scalars(select(WebhookAttempt.error)))
    assert errors == {"address not allowed"}


class LeakyReceiver:
    """Answers 500 with a body and headers full of internal details."""

    BODY = "java.sql.SQLException: password=hunter2 at db.internal:5432"

    def __init__(self) -> None:
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests += 1
                body = LeakyReceiver.BODY.encode()
                self.send_response(500)
                self.send_header("X-Internal-Host", "db.internal")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def leaky() -> Iterator[LeakyReceiver]:
    receiver = LeakyReceiver()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("allowed", [["127.0.0.0/8"]])
def test_a_failing_receiver_leaves_only_its_status_code_and_a_fixed_reason_in_the_log(
        bridge: Bridge, api: Api, worker: Worker, leaky: LeakyReceiver) -> None:
    answering = api.post("/webhook-endpoints", {"url": leaky.url}).get_json()
    refusing = api.post("/webhook-endpoints", {"url": f"http://127.0.0.1:{free_port()}/hooks"}).get_json()
    api.invite("first@example.com")

    _drain(worker)

    assert leaky.requests >= 1
    stored = _stored_text(bridge)
    for leaked in ("hunter2", "db.internal", "SQLException", "Errno", "Connection refused", "Max retries"):
        assert leaked not in stored
    shown = {}
    for endpoint in (answering, refusing):
        resp = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries")
        assert "hunter2" not in resp.get_data(as_text=True) and "Errno" not in resp.get_data(as_text=True)
        item = resp.get_json()["items"][0]
        shown[endpoint["id"]] = (item["last_status_code"], item["last_error"],
                                 {(a["status_code"], a["error"]) for a in item["log"]})
    assert shown[answering["id"]] == (500, "non-2xx status", {(500, "non-2xx status")})
    assert shown[refusing["id"]] == (None, "connection refused", {(None, "connection refused")})


@pytest.mark.parametrize("allowed", [["127.0.0.0/8"]])
def test_an_error_recorded_before_reasons_were_fixed_is_not_shown(bridge: Bridge, api: Api, worker: Worker,
                                                                   leaky: LeakyReceiver) -> None:
    endpoint = api.post("/webhook-endpoints", {"url": leaky.url}).get_json()
    api.invite("first@example.com")
    _drain(worker, rounds=1)
    with transaction(bridge.sessions) as session:
        for attempt in session.scalars(select(WebhookAttempt)):
            attempt.error = f"HTTP 500: {LeakyReceiver.BODY}"
        for delivery in session.scalars(select(WebhookDelivery)):
            delivery.last_error = f"HTTP 500: {LeakyReceiver.BODY}"

    body = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").get_json()

    item = body["items"][0]
    assert item["last_error"] == "failed" and {a["error"] for a in item["log"]} == {"failed"}


@pytest.fixture
def trusted_tls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeRequest]]:
    """A TLS receiver on loopback whose certificate names localhost and 127.0.0.1; its base URL is seen[0]."""
    seen: list[FakeRequest] = []

    def handler(request: FakeRequest) -> FakeResponse:
        seen.append(request)
        return FakeResponse.empty(204)

    with serve(handler, tls=True) as url:
        assert url.ca_file is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", url.ca_file)
        _verify.cache_clear()  # the bundle is read once per process
        seen.append(FakeRequest("GET", str(url), "/"))
        yield seen
    _verify.cache_clear()


@pytest.mark.parametrize("allowed", [["127.0.0.0/8"]])
def test_https_deliveries_verify_the_url_host_name_while_connecting_to_the_checked_address(
        bridge: Bridge, api: Api, worker: Worker, dns_server: LoopbackDNS, trusted_tls: list[FakeRequest]) -> None:
    port = urlsplit(trusted_tls.pop(0).root).port
    answer(dns_server, {"hooks.example.test": ["127.0.0.1"]})
    named = api.post("/webhook-endpoints", {"url": f"https://localhost:{port}/hooks"}).get_json()
    # The certificate is valid for 127.0.0.1, the address connected to, but not for this name: refused.
    other = api.post("/webhook-endpoints", {"url": f"https://hooks.example.test:{port}/hooks"}).get_json()
    api.invite("first@example.com")

    _drain(worker)

    assert [r.header("Host") for r in trusted_tls] == [f"localhost:{port}"]
    shown = {e["id"]: api.get(f"/webhook-endpoints/{e['id']}/deliveries").get_json()["items"][0]
             for e in (named, other)}
    assert (shown[named["id"]]["status"], shown[named["id"]]["last_status_code"]) == ("succeeded", 204)
    assert shown[other["id"]]["last_error"] == "tls error"


@pytest.mark.parametrize("allowed", [["127.0.0.0/8"]])
def test_a_redirect_from_a_receiver_is_not_followed(bridge: Bridge, api: Api, worker: Worker) -> None:
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(8)
    target.setblocking(False)
    location = f"http://127.0.0.1:{target.getsockname()[1]}/elsewhere"
    with serve(lambda request: FakeResponse.empty(307, {"Location": location})) as url:
        endpoint = api.post("/webhook-endpoints", {"url": f"{url}/hooks"}).get_json()
        api.invite("first@example.com")
        _drain(worker, rounds=2)

    with pytest.raises(BlockingIOError):
        target.accept()
    target.close()
    item = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").get_json()["items"][0]
    assert (item["last_status_code"], item["last_error"]) == (307, "non-2xx status")
