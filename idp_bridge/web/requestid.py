"""X-Request-ID: taken from the request when acceptable or generated, echoed, and bound to every log line."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from idp_bridge import logs

HEADER = "X-Request-ID"
# Where the request's id lives in the WSGI environ, for the access log and problem bodies.
ENVIRON_KEY = "idp_bridge.request_id"


class RequestId:
    """WSGI middleware: gives each request an id, answers with it, and logs everything it causes under it.

    The app runs in a context of its own, so what the request binds (its id, the organization a handler
    resolves) is seen by everything it logs, producing the body included, and by nothing after it.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = logs.request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[ENVIRON_KEY] = request_id

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != HEADER.lower()] + [(HEADER, request_id)]
            return start_response(status, headers, exc_info)

        context = contextvars.copy_context()
        context.run(logs.bind, request_id=request_id, org=None, job=None)
        body = context.run(self.app, environ, start)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            return body  # the server sends it from the file; nothing of ours runs meanwhile
        return InContext(context, body)


class InContext:
    """A WSGI response body produced (and closed) in the request's context."""

    def __init__(self, context: contextvars.Context, body: Iterable[bytes]) -> None:
        self.context = context
        self.body = body
        self.chunks: Iterator[bytes] | None = None

    def __iter__(self) -> InContext:
        return self

    def __next__(self) -> bytes:
        if self.chunks is None:
            self.chunks = self.context.run(iter, self.body)
        return self.context.run(next, self.chunks)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            self.context.run(close)


def request_id_of(environ: dict[str, Any]) -> str | None:
    """The id RequestId gave this request (None outside it)."""
    value = environ.get(ENVIRON_KEY)
    return value if isinstance(value, str) else None
