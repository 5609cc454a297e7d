"""TXT records through dnspython, against the configured dns_nameservers or the system's resolvers."""

from __future__ import annotations

from collections.abc import Iterable

import dns.exception
import dns.nameserver
import dns.resolver

from idp_bridge.errors import DNSLookupFailed, lazy_gettext
from idp_bridge.settings import nameserver_address

_TIMEOUT = 3.0


class TXTResolver:
    """Reads TXT records fresh each time (no cache: a record just published must count at once)."""

    def __init__(self, nameservers: Iterable[str] = ()) -> None:
        servers = [nameserver_address(text) for text in nameservers]
        resolver = dns.resolver.Resolver(configure=not servers)
        if servers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
        resolver.lifetime = _TIMEOUT
        resolver.timeout = _TIMEOUT / 2
        self._resolver = resolver

    def txt_records(self, name: str) -> list[str]:
        """The TXT strings at `name` (each record's strings joined); none for a name without TXT records."""
        try:
            answer = self._resolver.resolve(name, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise DNSLookupFailed(lazy_gettext("the DNS lookup of %(name)s failed (%(error)s)", name=name,
                                               error=type(exc).__name__)) from None
        found = []
        for record in answer:
            found.append(b"".join(record.strings).decode("utf-8", "replace"))
        return found
