"""Bench-only app for bench/callback.py: the production app, served by gunicorn, with the fake IdP mounted.

gunicorn imports `bench.callback_app:app` in its worker, so the app, the fake OP and its state live in the
worker process as the provider's HTTP session would talk to a remote OP from there. Settings come as JSON in
BENCH_CALLBACK_SETTINGS. Around the app, for the benchmark only:

- POST /__bench/authorize plays the person signing in at the OP (FakeOP.authorize + sign_ahead) and returns
  the callback parameters; the benchmark calls it while preparing, never while timing.
- Each response carries the time spent inside the fake OP during that request (from its transport's send()
  entry to its return, summed over the token and userinfo calls) and the worker's pid, so the benchmark can
  take IdP round-trips out of the callback figure (SPEC §8) and read the worker's peak RSS; and, for
  diagnosis only, the time from the app's entry to its start_response (the app's share of the request).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from requests import PreparedRequest, Response  # noqa: E402
from requests.adapters import BaseAdapter  # noqa: E402

from idp_bridge.bootstrap import build, create_app  # noqa: E402
from idp_bridge.settings import load_settings  # noqa: E402
from providers.base import OIDCProviderBase  # noqa: E402
from tests.fakes.oidc import FakeOP  # noqa: E402

SETTINGS_ENV = "BENCH_CALLBACK_SETTINGS"
ISSUER_ENV = "BENCH_CALLBACK_ISSUER"
AUTHORIZE_PATH = "/__bench/authorize"
IDP_HEADER = "X-Bench-IdP-Us"
PID_HEADER = "X-Bench-Pid"
APP_HEADER = "X-Bench-App-Us"

_spent = threading.local()


class TimedTransport(BaseAdapter):
    """The fake OP's transport, adding the time each send() takes to this thread's IdP time."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(self, request: PreparedRequest, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> Response:
        t0 = time.perf_counter()
        try:
            return self.inner.send(request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                                   proxies=proxies)
        finally:
            _spent.seconds = getattr(_spent, "seconds", 0.0) + time.perf_counter() - t0

    def close(self) -> None:
        self.inner.close()


StartResponse = Callable[..., Any]


class BenchWrapper:
    """WSGI wrapper: the bench's authorize endpoint, and IdP time plus pid on every response."""

    def __init__(self, app: Any, op: FakeOP) -> None:
        self.app = app
        self.op = op

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == AUTHORIZE_PATH and environ.get("REQUEST_METHOD") == "POST":
            body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            params = self.op.authorize(body["url"], body["claims"])
            self.op.sign_ahead(params["code"])
            data = json.dumps(params).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        _spent.seconds = 0.0
        t0 = time.perf_counter()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append((APP_HEADER, f"{(time.perf_counter() - t0) * 1e6:.0f}"))
            headers.append((IDP_HEADER, f"{_spent.seconds * 1e6:.0f}"))
            headers.append((PID_HEADER, str(os.getpid())))
            return start_response(status, headers, exc_info)

        result: Iterable[bytes] = self.app(environ, start)
        return result


def build_app() -> BenchWrapper:
    settings = load_settings(environ={}, overrides=json.loads(os.environ[SETTINGS_ENV]))
    bridge = build(settings)
    flask_app = create_app(bridge=bridge)
    issuer = os.environ[ISSUER_ENV]
    op = FakeOP(issuer, iss_parameter=True)
    for provider in bridge.providers.values():
        if isinstance(provider, OIDCProviderBase):
            provider.oidc.http.mount(f"{issuer}/", TimedTransport(op.adapter()))
    return BenchWrapper(flask_app, op)


app = build_app() if SETTINGS_ENV in os.environ else None
