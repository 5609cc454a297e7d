"""X-Request-ID: taken from the request when acceptable or generated, echoed, and bound to every log line."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wsgi import ClosingIterator

from idp_bridge import logs

HEADER = "X-Request-ID"
# Where the request's id lives in the WSGI environ, for the access log and problem bodies.
ENVIRON_KEY = "idp_bridge.request_id"


class RequestId:
    """WSGI middleware: gives each request an id, answers with it, and logs everything it causes under it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = logs.request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[ENVIRON_KEY] = request_id
        # Organization and job are unknown until a handler resolves them; nothing of a previous request on
        # this thread carries over.
        unbind = logs.bind(request_id=request_id, org=None, job=None)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != HEADER.lower()] + [(HEADER, request_id)]
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            unbind()
            raise
        # Bound until the server closes the response: the body may still be produced (and log) until then.
        return ClosingIterator(body, unbind)


def request_id_of(environ: dict[str, Any]) -> str | None:
    """The id RequestId gave this request (None outside it)."""
    value = environ.get(ENVIRON_KEY)
    return value if isinstance(value, str) else None
