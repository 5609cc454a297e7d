"""The access log's redaction, over every route the app has: secret path segments and undocumented query values."""

from __future__ import annotations

import datetime as dt
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp_bridge.bootstrap import create_app
from idp_bridge.bridge import Bridge
from idp_bridge.web.redact import REDACTED, RedactingLogger, SecretConverter, redactor

# Route variables with these names hold a credential wherever they appear.
SECRET_LOOKING = {"token", "code", "state", "secret", "key", "api_key", "password"}
TOKENS = st.text(string.ascii_letters + string.digits + "-_", min_size=24, max_size=64)
QUERY_NAMES = st.text(string.ascii_letters + "_", min_size=1, max_size=12)


@dataclass
class FakeResponse:
    """What gunicorn's logger reads of a response."""

    status: str = "303 See Other"
    headers: list[tuple[str, str]] = field(default_factory=list)
    sent: int = 0


@dataclass
class FakeRequest:
    """What gunicorn's logger reads of a request."""

    headers: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def app(bridge: Bridge) -> Flask:
    return create_app(bridge=bridge)


def log_line(raw_uri: str, *, referer: str = "-", location: str = "") -> str:
    """The access-log line `serve` writes for one request (its default format)."""
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = RedactingLogger(cfg)
    path, _, query = raw_uri.partition("?")
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": raw_uri, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_REFERER": referer,
               "HTTP_USER_AGENT": "test", "HTTP_AUTHORIZATION": "Bearer ibk_secretsecretsecret"}
    resp = FakeResponse(headers=[("Location", location)] if location else [])
    req = FakeRequest(headers=[("REFERER", referer), ("AUTHORIZATION", "Bearer ibk_secretsecretsecret")])
    atoms = logger.atoms(resp, req, environ, dt.timedelta(milliseconds=3))
    everything = " ".join(str(v) for v in atoms.values())
    return str(cfg.access_log_format % SafeAtoms(atoms)) + "\n" + everything


def secret_rules(app: Flask) -> list[Any]:
    return [r for r in app.url_map.iter_rules()
            if any(isinstance(c, SecretConverter) for c in r._converters.values())]


def test_every_route_variable_named_like_a_secret_is_declared_secret(app: Flask) -> None:
    undeclared = [(rule.rule, name) for rule in app.url_map.iter_rules()
                  for name, converter in rule._converters.items()
                  if name in SECRET_LOOKING and not isinstance(converter, SecretConverter)]

    assert secret_rules(app) and undeclared == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=TOKENS, suffix=st.sampled_from(["", "/", "/login", "/x/y"]), encode=st.booleans(),
       data=st.data())
def test_no_secret_path_segment_of_any_route_reaches_the_access_log(
        app: Flask, token: str, suffix: str, encode: bool, data: st.DataObject) -> None:
    rule = data.draw(st.sampled_from(secret_rules(app)))
    path = "/".join(token if "<secret:" in part else ("plain" if "<" in part else part)
                    for part in rule.rule.split("/")) + suffix
    if encode:  # routing decodes %-escapes: a path spelled with them reaches the same route
        path = "/" + "".join(f"%{ord(c):02X}" if c.isalpha() else c for c in path.lstrip("/")[:3]) + path[4:]
    url = f"https://join.test{path}"

    line = log_line(path, referer=url, location=url + "?again=1")

    assert token not in line and REDACTED in line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(QUERY_NAMES, TOKENS, min_size=1, max_size=4), data=st.data())
def test_only_documented_query_values_reach_the_access_log(
        app: Flask, values: dict[str, str], data: st.DataObject) -> None:
    rule = data.draw(st.sampled_from([r.rule for r in app.url_map.iter_rules() if "<" not in r.rule]))
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in values.items())

    line = log_line(f"{rule}?{query}", referer=f"https://join.test{rule}?{query}")

    for name, value in values.items():
        assert (value in line) == (name in redactor().safe_query), (name, line)


def test_the_login_callback_code_and_state_and_credentials_are_redacted(app: Flask) -> None:
    line = log_line("/auth/callback/corp?code=Zm9vYmFyYmF6cXV4cXV1eA&state=c3RhdGVzdGF0ZXN0YXRl&iss=https%3A%2F%2Fop")

    assert "Zm9vYmFyYmF6cXV4cXV1eA" not in line and "c3RhdGVzdGF0ZXN0YXRl" not in line
    assert "ibk_secretsecretsecret" not in line
    assert "code=[redacted]&state=[redacted]&iss=https%3A%2F%2Fop" in line
