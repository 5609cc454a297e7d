"""Where outbound webhooks may connect: https URLs to public addresses, unless a network is listed as allowed.

The same judgement runs when an endpoint is registered (on every address its host resolves to) and when a
delivery connects (on the address actually connected to), so a DNS answer that changes in between gains nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.nameserver
import dns.resolver
import idna

from idp_bridge.errors import lazy_gettext
from idp_bridge.settings import Settings, nameserver_address

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Fixed reasons a delivery records when the policy stops it (never the resolver's or the socket's own text).
ADDRESS_NOT_ALLOWED = "address not allowed"
NAME_NOT_RESOLVED = "name not resolved"

NOT_HTTPS = lazy_gettext("must be an absolute https URL")
HTTP_NOT_LISTED = lazy_gettext("must use https (plain http only to networks listed in webhook_allow_networks)")
CREDENTIALS = lazy_gettext("must not carry credentials")
BAD_PORT = lazy_gettext("has an invalid port")
BAD_HOST = lazy_gettext("has an invalid host name")
UNRESOLVED = lazy_gettext("has a host name that does not resolve")

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
# Globally routable by the tables, yet a relay into other networks: judged like reserved space.
_RELAYS = (ipaddress.ip_network("192.88.99.0/24"),)
_ASCII_HOST = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?")
_LEGACY_IPV4 = re.compile(r"[0-9a-fx.]+")
_TIMEOUT = 3.0


class Refused(Exception):
    """A destination webhooks may not reach; `message` is fixed wording for the caller, `reason` for the log."""

    def __init__(self, message: str, reason: str = ADDRESS_NOT_ALLOWED) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4): the one the packets end up at."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def category(address: Address) -> str | None:
    """Why an address is not public, in fixed words; None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return category(embedded)
    if address in _METADATA:
        return lazy_gettext("the cloud metadata address")
    if address.is_loopback:
        return lazy_gettext("a loopback address")
    if address.is_unspecified:
        return lazy_gettext("an unspecified address")
    if address.is_link_local:
        return lazy_gettext("a link-local address")
    if address.is_multicast:
        return lazy_gettext("a multicast address")
    if address in _CGNAT:
        return lazy_gettext("a shared (CGNAT) address")
    if address in _UNIQUE_LOCAL:
        return lazy_gettext("a unique-local address")
    if address.is_reserved or any(address in net for net in _RELAYS):
        return lazy_gettext("a reserved address")
    if address.is_private:
        return lazy_gettext("a private address")
    if not address.is_global:
        return lazy_gettext("a reserved address")
    return None


def literal(host: str) -> Address | None:
    """The address a host names literally, in any notation the socket layer accepts (0x7f.1, 2130706433…)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class Target:
    """A URL's scheme, its host as connected to (ASCII name or address) and port."""

    scheme: str
    host: str
    port: int


def target_of(url: str) -> Target:
    """Split a webhook URL; raises Refused when it is not an absolute http(s) URL to a valid host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise Refused(NOT_HTTPS)
    if "@" in parts.netloc:
        raise Refused(CREDENTIALS)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise Refused(BAD_PORT) from None
    host = parts.hostname or ""
    if not host:
        raise Refused(NOT_HTTPS)
    if "[" in parts.netloc and not isinstance(literal(host), ipaddress.IPv6Address):
        raise Refused(BAD_HOST)
    return Target(scheme, normal_host(host), port)


def normal_host(host: str) -> str:
    """A host as the HTTP client connects to it: an address literal, or its IDNA (UTS #46) A-label name."""
    host = host.lower()
    if (address := literal(host)) is not None:
        return str(address)
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise Refused(BAD_HOST) from None
        # Full-width digits and dots map to an address literal under UTS #46.
        if (address := literal(host)) is not None:
            return str(address)
    if len(host) > 254 or not _ASCII_HOST.fullmatch(host):
        raise Refused(BAD_HOST)
    return host


class Resolver:
    """Name to addresses: dnspython against the configured servers, or the system's resolver."""

    def __init__(self, nameservers: Iterable[str] = ()) -> None:
        servers = [nameserver_address(text) for text in nameservers]
        self._dns: dns.resolver.Resolver | None = None
        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
            resolver.lifetime = _TIMEOUT
            resolver.timeout = _TIMEOUT / 2
            # Answers are kept for their TTL; safe, since a delivery connects to the very address it checked.
            resolver.cache = dns.resolver.LRUCache(1024)
            self._dns = resolver

    def addresses(self, host: str, port: int) -> list[Address]:
        """Every address host resolves to; raises Refused (name not resolved) when there is none."""
        if self._dns is not None:
            try:
                answer = self._dns.resolve_name(host, family=socket.AF_UNSPEC, search=False)
                found = [ipaddress.ip_address(a) for a in answer.addresses()]
            except (dns.exception.DNSException, ValueError):
                raise Refused(UNRESOLVED, NAME_NOT_RESOLVED) from None
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                raise Refused(UNRESOLVED, NAME_NOT_RESOLVED) from None
            found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos
                     if info[0] in (socket.AF_INET, socket.AF_INET6)]
        if not found:
            raise Refused(UNRESOLVED, NAME_NOT_RESOLVED)
        return list(dict.fromkeys(found))


class Destinations:
    """The policy: https to public addresses; networks in webhook_allow_networks besides, over http too."""

    def __init__(self, allow_networks: Iterable[str], resolver: Resolver) -> None:
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self.resolver = resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> Destinations:
        return cls(settings.webhook_allow_networks, Resolver(settings.dns_nameservers))

    def listed(self, address: Address) -> bool:
        """Inside a network the deployment allows (an IPv6 form carrying IPv4 is judged by that IPv4)."""
        forms: list[Address] = [address]
        if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
            forms.append(embedded)
        return any(form in net for form in forms for net in self.allowed if form.version == net.version)

    def check_url(self, url: str) -> None:
        """Registration: the URL's shape, then every address its host resolves to; raises Refused."""
        target = target_of(url)
        self.addresses(target.scheme, target.host, target.port)

    def addresses(self, scheme: str, host: str, port: int) -> list[Address]:
        """The addresses to connect to for scheme://host:port, every one of them allowed; raises Refused."""
        if scheme not in ("http", "https"):
            raise Refused(NOT_HTTPS)
        host = normal_host(host)
        if host == "localhost" or host.rstrip(".").endswith(".localhost"):
            # RFC 6761: always this machine, whatever a DNS server says.
            found: list[Address] = [ipaddress.ip_address("127.0.0.1")]
        else:
            address = literal(host)
            found = [address] if address is not None else self.resolver.addresses(host, port)
        for address in found:
            if self.listed(address):
                continue
            why = category(address)
            if why is not None:
                raise Refused(lazy_gettext("points to %(category)s; webhooks go to public addresses only",
                                           category=why))
        if scheme == "http" and not all(self.listed(a) for a in found):
            raise Refused(HTTP_NOT_LISTED)
        return found
