"""A DNS server on a loopback UDP port that answers from a table (dnspython's message API), for tests.

Names in `answers` get those addresses (A and AAAA picked by version, TTL 0 so nothing is cached); any other
name gets `default`, or NXDOMAIN when default is None. TXT queries are answered from `txt` (NXDOMAIN for a name
not in it), after `on_txt` (when set) has run with the name. Tests change the tables while it runs.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class LoopbackDNS:
    """Answers A/AAAA queries from a table; counts the queries it got per name."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.default: list[str] | None = ["127.0.0.1"]
        self.txt: dict[str, list[str]] = {}
        self.queries: dict[str, int] = {}
        self.on_txt: Callable[[str], None] | None = None
        self.lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        """The server as a dns_nameservers entry."""
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def start(self) -> LoopbackDNS:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _addresses(self, name: str) -> list[str] | None:
        with self.lock:
            self.queries[name] = self.queries.get(name, 0) + 1
            return list(self.answers[name]) if name in self.answers else self.default

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            if question.rdtype == dns.rdatatype.TXT:
                if self.on_txt is not None:
                    self.on_txt(name)
                with self.lock:
                    self.queries[name] = self.queries.get(name, 0) + 1
                    records = self.txt.get(name)
                if records is None:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                elif records:
                    quoted = ['"' + r.replace("\\", "\\\\").replace('"', '\\"') + '"' for r in records]
                    response.answer.append(dns.rrset.from_text_list(question.name, 0, dns.rdataclass.IN,
                                                                    dns.rdatatype.TXT, quoted))
                self._sock.sendto(response.to_wire(), peer)
                continue
            found = self._addresses(name)
            if found is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                version = 4 if question.rdtype == dns.rdatatype.A else 6
                wanted = [a for a in found if ipaddress.ip_address(a).version == version]
                if wanted and question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    response.answer.append(dns.rrset.from_text_list(question.name, 0, dns.rdataclass.IN,
                                                                    question.rdtype, wanted))
            self._sock.sendto(response.to_wire(), peer)
