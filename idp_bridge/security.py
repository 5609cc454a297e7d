"""Secrets: random tokens, hashes that are stored instead of them, constant-time checks."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

API_KEY_PREFIX = "ibk_"
# 32 bytes = 256 random bits, as SPEC §3 asks of invite links.
TOKEN_BYTES = 32
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: codes are typed by people
CODE_LENGTH = 8


def new_token() -> str:
    """A URL-safe token carrying 256 random bits."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def new_invite_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    """Codes are case-insensitive and may be typed with spaces or dashes."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def token_hash(token: str) -> str:
    """SHA-256 hex of a high-entropy token; a slow hash adds nothing at 256 bits."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_hash(secret_key: str, value: str) -> str:
    """HMAC for low-entropy values (invite codes) so a leaked table cannot be brute-forced offline."""
    return hmac.new(secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings."""
    return hmac.compare_digest(a.encode(), b.encode())


@functools.lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    # Cached: a directory's creates seal one link per request; the key is derived once.
    import base64

    from cryptography.fernet import Fernet

    derived = hashlib.sha256(b"idp-bridge/seal/" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(secret_key: str, plaintext: str) -> str:
    """Encrypt a value that must wait in the outbox (a link to mail); wiped once used."""
    return _fernet(secret_key).encrypt(plaintext.encode()).decode()


def sealer(secret_key: str) -> Callable[[str], str]:
    """seal() for many values in a row: the key is derived once."""
    fernet = _fernet(secret_key)
    return lambda plaintext: fernet.encrypt(plaintext.encode()).decode()


def unseal(secret_key: str, sealed: str, fallbacks: Sequence[str] = ()) -> str:
    """Decrypt with the current key, then each older key (secret_key_fallbacks) in turn."""
    return _multi(secret_key, tuple(fallbacks)).decrypt(sealed.encode()).decode()


@functools.lru_cache(maxsize=8)
def _multi(secret_key: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    # Cached: the hot paths (mail, callback, delivery) unseal per item; deriving the keys once is enough.
    from cryptography.fernet import MultiFernet

    return MultiFernet([_fernet(key) for key in (secret_key, *fallbacks)])


def keyed_hash_matches(keys: Sequence[str], value: str, expected: str) -> bool:
    """Whether `expected` is keyed_hash(key, value) for any of the keys (current first, then fallbacks)."""
    found = False
    for key in keys:
        # No early exit: every key is tried, so timing does not tell which one matched.
        found |= same(expected, keyed_hash(key, value))
    return found


# Sealed values are Fernet tokens; a webhook secret stored before sealing began starts with this instead.
LEGACY_WEBHOOK_SECRET_PREFIX = "whsec_"


def open_webhook_secret(secret_key: str, stored: str, fallbacks: Sequence[str] = ()) -> str:
    """The signing secret from its stored form: sealed, or (rows written before 0003) still plaintext."""
    if stored.startswith(LEGACY_WEBHOOK_SECRET_PREFIX):
        return stored
    return _open_cached(secret_key, tuple(fallbacks), stored)


@functools.lru_cache(maxsize=4096)
def _open_cached(secret_key: str, fallbacks: tuple[str, ...], stored: str) -> str:
    # Each delivery signs with its endpoint's secret; one decryption per endpoint keeps the delivery path fast.
    return unseal(secret_key, stored, fallbacks)
