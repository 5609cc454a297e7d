"""A host platform's webhook receiver on a loopback port, verifying with the standardwebhooks library."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Accepts a delivery (204) only when one of its secrets verifies it; can be taken down and brought back."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.port = free_port()
        self.secrets = list(secrets or [])
        self.accepted: list[dict[str, Any]] = []
        self.accepted_ids: Counter[str] = Counter()
        self.rejected = 0
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def verify(self, body: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
        for secret in self.secrets:
            try:
                payload: dict[str, Any] = Webhook(secret).verify(body, headers)
                return payload
            except WebhookVerificationError:
                continue
        return None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                payload = receiver.verify(body, dict(self.headers.items()))
                with receiver.lock:
                    receiver.authorizations.append(self.headers.get("Authorization"))
                    if payload is None:
                        receiver.rejected += 1
                    else:
                        receiver.accepted.append({"id": self.headers["webhook-id"], "payload": payload})
                        receiver.accepted_ids[self.headers["webhook-id"]] += 1
                self.send_response(400 if payload is None else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None
