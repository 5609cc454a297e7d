"""Invitation mail in the invite's language (English for none, or for one not shipped), with Content-Language,
rendered by the worker outside any request and delivered over real SMTP."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from idp_bridge.bootstrap import create_app, make_worker
from idp_bridge.bridge import Bridge
from tests.conftest import RecordingMail
from tests.helpers import Api, make_key, make_org
from tests.test_worker_and_mail import Sink, bridge_with, smtp_sink

__all__ = ["smtp_sink"]


def mailed(bridge: Bridge, mail: RecordingMail, identifier: str, **fields: Any) -> tuple[dict[str, Any], EmailMessage]:
    make_org(bridge, require_invite_code=True)
    api = Api(create_app(bridge=bridge).test_client(), make_key(bridge))
    issued = api.invite(identifier, name="Ada", **fields)
    assert make_worker(bridge).run_once()["done"] == 1
    [message] = mail.to(identifier)
    return issued, message


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


@pytest.mark.parametrize("tag", ["de", "de-AT"])
def test_an_invite_in_german_is_mailed_in_german(bridge: Bridge, mail: RecordingMail, tag: str) -> None:
    issued, message = mailed(bridge, mail, "ada@example.com", locale=tag)
    assert message["Content-Language"] == "de"
    assert str(message["Subject"]) == "Sie sind eingeladen, Acme beizutreten"
    text, html = parts(message)
    assert "Hallo Ada," in text and "Eine Administratorin oder ein Administrator von Acme hat Sie eingeladen" in text
    assert "Ihr Einladungscode: " + issued["code"] in text and "Einladung annehmen:" in text
    assert '<html lang="de">' in html and "Einladung annehmen</a>" in html
    year = issued["expires_at"][:4]
    assert "Diese Einladung läuft am " in text and f"{year}, " in text and " UTC ab." in text
    for part in (text, html):
        assert issued["link"] in part
        assert "invited" not in part and "expires" not in part


@pytest.mark.parametrize("fields", [{}, {"locale": "fr"}, {"locale": "en-GB"}])
def test_an_invite_without_a_shipped_language_is_mailed_in_english(bridge: Bridge, mail: RecordingMail,
                                                                    fields: dict[str, str]) -> None:
    _, message = mailed(bridge, mail, "ada@example.com", **fields)
    assert message["Content-Language"] == "en"
    assert str(message["Subject"]) == "You're invited to join Acme"
    text, html = parts(message)
    assert "Hello Ada," in text and "An admin of Acme invited you to join Acme" in text
    assert '<html lang="en">' in html


def test_german_mail_keeps_its_language_over_smtp(settings_overrides: dict[str, Any],
                                                  smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    settings_overrides.update(mail_transport="smtp", smtp_host="127.0.0.1", smtp_port=port,
                              providers={"google": {"type": "google", "client_id": "c", "client_secret": "s"}})
    b = bridge_with(settings_overrides)
    try:
        make_org(b)
        api = Api(create_app(bridge=b).test_client(), make_key(b))
        api.invite("ada@example.com", locale="de", provider="google",
                   inviter={"name": "Grace", "email": "grace@acme.test"})
        assert make_worker(b).run_once()["done"] == 1
    finally:
        b.close()
    [(_, raw)] = sink.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Content-Language"] == "de"
    assert str(message["Subject"]) == "Sie sind eingeladen, Acme beizutreten"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Grace (grace@acme.test) hat Sie eingeladen, Acme als Member beizutreten." in text
    assert "Verwenden Sie zum Anmelden das Google-Konto ada@example.com." in text, "the provider's words too"
