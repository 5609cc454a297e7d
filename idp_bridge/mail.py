"""Outgoing mail: rendering from templates, and transports (file outbox or SMTP)."""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, select_autoescape

from idp_bridge import locales
from idp_bridge.settings import Settings


class MailTransport(Protocol):
    """Delivers one message or raises."""

    def send(self, message: EmailMessage) -> None: ...


class FileTransport:
    """Writes each message as an .eml file: the service runs with nothing else installed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        # Private: each message carries a live invite link (mkstemp already makes the files 0600).
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{formatdate(usegmt=True).replace(' ', '_').replace(',', '')}-{uuid.uuid4().hex[:12]}.eml"
        # Write then rename, so a reader never sees half a message.
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(message))
        os.replace(tmp, self.directory / name)


class SMTPTransport:
    """Sends through an SMTP server, with STARTTLS or implicit TLS when configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.smtp_security == "ssl":
            smtp = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        with smtp:
            if s.smtp_security == "starttls":
                smtp.starttls(context=context)
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(message)


def stable_message_id(name: str, sender: str) -> str:
    """A Message-ID that is the same every time `name` is mailed, so receivers can drop a resent duplicate."""
    domain = parseaddr(sender)[1].rpartition("@")[2].strip().lower()
    # The right side names who generated the id; a sender domain that is not plain ASCII cannot go in the header.
    if not domain or not domain.isascii() or not all(ch.isalnum() or ch in ".-" for ch in domain):
        domain = "idp-bridge"
    return f"<{name}@{domain}>"


def make_transport(settings: Settings) -> MailTransport:
    """The transport the settings ask for."""
    if settings.mail_transport == "smtp":
        return SMTPTransport(settings)
    return FileTransport(settings.mail_dir)


class Renderer:
    """Renders mail templates (HTML + plain text) shipped with the package, in each shipped language."""

    def __init__(self) -> None:
        # One environment per language: the translations are installed once, never swapped under a render.
        self._envs = {language: self._environment(language) for language in locales.SHIPPED}

    @staticmethod
    def _environment(language: str) -> Environment:
        env = Environment(loader=PackageLoader("idp_bridge", "templates/mail"), extensions=["jinja2.ext.i18n"],
                          autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        env.install_gettext_translations(locales.translations(language), newstyle=True)  # type: ignore[attr-defined]
        env.globals["language"] = language
        return env

    def message(self, template: str, *, sender: str, to: str, subject: str,
                context: dict[str, Any], message_id: str | None = None,
                language: str = locales.DEFAULT) -> EmailMessage:
        """Build a multipart/alternative message from `<template>.txt` and `<template>.html` in `language` (a
        shipped one; the subject comes translated)."""
        env = self._envs.get(language) or self._envs[locales.DEFAULT]
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = sender
        msg["To"] = to
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id or make_msgid(domain="idp-bridge")
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(env.get_template(f"{template}.txt").render(**context))
        msg.add_alternative(env.get_template(f"{template}.html").render(**context), subtype="html")
        # After the body: setting the content clears every Content-* header.
        msg["Content-Language"] = language if language in self._envs else locales.DEFAULT
        return msg
