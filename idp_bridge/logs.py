"""Log output: text or JSON lines, each naming the request, organization and job it happened in."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
ORG: ContextVar[str | None] = ContextVar("org", default=None)
JOB: ContextVar[str | None] = ContextVar("job", default=None)
# The record attributes (and JSON keys) the context adds, in output order.
CONTEXT: dict[str, ContextVar[str | None]] = {"request_id": REQUEST_ID, "org": ORG, "job": JOB}

# A client's X-Request-ID is kept when it is short and plain (UUIDs, ULIDs, trace ids); anything else could
# forge log lines or bloat them, and is replaced by a generated id.
_ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/@-]{0,127}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_format: LogFormat = "text"


def request_id_from(header: str | None) -> str:
    """The request id to use: the client's X-Request-ID when it is acceptable, else a new one."""
    if header and _ACCEPTED_REQUEST_ID.fullmatch(header):
        return header
    # 128 random bits as 32 hex digits, as uuid4().hex reads, without building a UUID object per request.
    return os.urandom(16).hex()


def bind(**values: str | None) -> Callable[[], None]:
    """Set context values (request_id, org, job) for what this thread logs next; returns what undoes it."""
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = [
        (CONTEXT[name], CONTEXT[name].set(value)) for name, value in values.items()]

    def reset() -> None:
        for var, token in reversed(tokens):
            # ValueError: undone from another context than the one that bound it (a server closing a response
            # on another thread), which never saw the values.
            with contextlib.suppress(ValueError):
                var.reset(token)

    return reset


class ContextFilter(logging.Filter):
    """Adds request_id, org and job to every record, from the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and request_id, org, job when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        # Line breaks in messages come out escaped: one event is always one line.
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic one-line format, with the known context appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(f"{name}={value}" for name in CONTEXT if (value := getattr(record, name, None)))
        return f"{line} [{context}]" if context else line


def formatter(log_format: LogFormat | None = None) -> logging.Formatter:
    """A formatter for `log_format` (default: the one this process was configured with)."""
    return JsonFormatter() if (log_format or _format) == "json" else TextFormatter()


def current_format() -> LogFormat:
    """The format this process logs in."""
    return _format


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at the time (test runners and click swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure(log_format: LogFormat = "text", *, level: int | None = None) -> None:
    """Log to stderr in `log_format`, context included, unless the host program set up logging itself.

    Like logging.basicConfig, a root logger with handlers of someone else's (a test runner, an embedding
    application) is left alone; a handler installed here before is reconfigured.
    """
    global _format
    _format = log_format
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, StderrHandler)]
    if root.handlers and not ours:
        return
    handler = ours[0] if ours else StderrHandler()
    handler.setFormatter(formatter(log_format))
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())
    if not ours:
        root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
