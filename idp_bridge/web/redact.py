"""Keep secrets out of request logs: invite tokens in paths and secret query values become [redacted].

Which path segments are secret comes from the URL rules: a route declares one with the `secret` converter
(`/invite/<secret:token>`). Which query parameters may be logged comes from the operation registry (the API's
documented parameters) and the few plain ones the invitee pages read; any other value (the OIDC callback's
`code` and `state`, whatever a client adds) is redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from flask import Flask
from gunicorn.glogging import Logger
from werkzeug.routing import BaseConverter, Rule

from idp_bridge import logs
from idp_bridge.web.requestid import request_id_of

REDACTED = "[redacted]"
SECRET_CONVERTER = "secret"
# Query parameters of the invitee pages that carry no secret (the callback's `code` and `state` do).
PAGE_QUERY = frozenset({"again", "provider", "error", "iss"})
# Request and response headers that carry credentials or session cookies, as gunicorn names their atoms.
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"})
# Atoms holding a URL or a path (with query) that the access-log format may print.
URL_ATOMS = frozenset({"U", "f", "{referer}i", "{location}o", "{raw_uri}e", "{path_info}e", "{http_referer}e",
                       "{request_uri}e"})
_MERGE_SLASHES = re.compile(r"/{2,}")
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


class SecretConverter(BaseConverter):
    """One path segment that is a secret (an invite token): matched like a string, never logged."""


class Redactor:
    """Rewrites paths, query strings and URLs with their secret parts replaced."""

    def __init__(self, secret_prefixes: Iterable[str] = (), safe_query: Iterable[str] | None = None) -> None:
        self.patterns = [re.compile(p) for p in sorted(set(secret_prefixes))]
        # None: nothing installed yet (no app in this process), so every query value is redacted.
        self.safe_query = frozenset(safe_query) if safe_query is not None else frozenset()
        self.installed = safe_query is not None

    def path(self, path: str) -> str:
        """The path with each secret segment replaced (decoded and with slashes merged, as routing sees it)."""
        path = _MERGE_SLASHES.sub("/", unquote(path))
        if not self.installed:
            # Before the app told us its routes: keep only the first segment.
            head, sep, _rest = path.lstrip("/").partition("/")
            return f"/{head}/{REDACTED}" if sep else path
        for pattern in self.patterns:
            match = pattern.match(path)
            if match:
                start, end = match.span("secret")
                path = path[:start] + REDACTED + path[end:]
        return path

    def query(self, query: str) -> str:
        """The query string with every value of an undocumented parameter replaced."""
        if not query:
            return query
        pairs = parse_qsl(query, keep_blank_values=True)
        return "&".join(f"{quote(k, safe='')}={quote(v, safe='') if k in self.safe_query else REDACTED}"
                        for k, v in pairs)

    def target(self, target: str) -> str:
        """A request target (path?query) or an absolute URL, redacted."""
        if not target or target == "-":
            return target
        parts = urlsplit(target)
        return urlunsplit((parts.scheme, parts.netloc, self.path(parts.path), self.query(parts.query), ""))


_redactor = Redactor()


def redactor() -> Redactor:
    """The redactor of this process's app (or the conservative one before an app is built)."""
    return _redactor


def secret_prefix_patterns(rules: Iterable[Rule]) -> list[str]:
    """For every rule with a secret segment: a regex matching the path up to that segment, the segment as
    group `secret`. Everything after it may differ, so a mistyped suffix (a 404) is redacted too."""
    found = []
    for rule in rules:
        segments = rule.rule.split("/")
        for i, segment in enumerate(segments):
            variable = _VARIABLE.fullmatch(segment)
            if variable is None or variable["converter"] != SECRET_CONVERTER:
                continue
            before = ["[^/]*" if _VARIABLE.search(s) else re.escape(s) for s in segments[:i]]
            found.append("/".join(before) + "/(?P<secret>[^/]*)")
    return found


def install(app: Flask) -> None:
    """Derive this process's redactor from the app's URL rules and the API's documented query parameters."""
    global _redactor
    from idp_bridge.web.api import OPERATIONS

    safe_query = {q.name for op in OPERATIONS for q in op.query} | PAGE_QUERY
    _redactor = Redactor(secret_prefix_patterns(app.url_map.iter_rules()), safe_query)


def register_converter(app: Flask) -> None:
    """Make `<secret:name>` available to routes; before any blueprint adds its rules."""
    app.url_map.converters[SECRET_CONVERTER] = SecretConverter


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with the request line, path, query, referer and credentials redacted; its lines
    come out in the process's log format, the access log's with the request's id."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in [*self.error_log.handlers, *self.access_log.handlers]:
            handler.setFormatter(logs.formatter())
            handler.addFilter(logs.ContextFilter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        # The server writes this line after the app returned; the request's id is still in its environ.
        unbind = logs.bind(request_id=request_id_of(environ))
        try:
            super().access(resp, req, environ, request_time)
        finally:
            unbind()

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        r = _redactor
        atoms["r"] = f"{environ['REQUEST_METHOD']} {r.target(environ['RAW_URI'])} {environ['SERVER_PROTOCOL']}"
        atoms["q"] = r.query(atoms.get("q") or "")
        for key in URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = r.target(atoms[key])
        if isinstance(atoms.get("{query_string}e"), str):
            atoms["{query_string}e"] = r.query(atoms["{query_string}e"])
        for key in list(atoms):
            if not key.startswith("{"):
                continue
            name, kind = key[1:-2], key[-1]
            if kind == "e" and name.startswith("http_"):
                name = name[5:].replace("_", "-")
            if name in SECRET_HEADERS:
                atoms[key] = REDACTED
        return atoms
