"""Who may use the API and the dashboard: API keys.

API keys are random 256-bit tokens (``wfk_...``, made by ``wfcrawl api-key``);
only their SHA-256 digests are configured (``WFCRAWL_API_KEYS``). A fast hash
is enough for keys of that entropy (a slow password hash protects guessable
secrets); the presented key's digest is compared with every configured digest
in constant time. Pub/Sub push requests have their own checks
(:mod:`wfcrawl.web.pushauth`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wfcrawl.exceptions import ConfigurationError


class AuthError(Exception):
    """Refused: ``status`` 401 (no or invalid credentials) or 403 (valid, not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ------------------------------------------------------------------ API keys

KEY_PREFIX = "wfk_"
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,64}):(?P<digest>[0-9a-f]{64})(?::(?P<scope>read|write))?$")


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    read_only: bool = False

    @property
    def fingerprint(self) -> str:
        """Names this key's current value (a session ends when the key is replaced), not the key."""
        return hashlib.sha256(b"wfcrawl-session:" + self.digest).hexdigest()[:16]


def parse_api_keys(entries: Iterable[str]) -> list[ApiKey]:
    """``name:sha256hex`` or ``name:sha256hex:read`` entries; a bad one is a ConfigurationError."""
    keys: list[ApiKey] = []
    for entry in entries:
        match = _ENTRY.match(entry.strip())
        if match is None:
            # Never echo the entry: it may be a key pasted by mistake.
            raise ConfigurationError(
                f"WFCRAWL_API_KEYS entry {len(keys) + 1} is not NAME:SHA256HEX[:read] "
                "(make one with `wfcrawl api-key NAME`)"
            )
        keys.append(ApiKey(match["name"], bytes.fromhex(match["digest"]), match["scope"] == "read"))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ConfigurationError("WFCRAWL_API_KEYS: key names must be unique")
    return keys


class ApiKeyAuth:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)

    def authenticate(self, headers: Mapping[str, str]) -> ApiKey:
        """The key of a request (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``)."""
        presented = headers.get("x-api-key") or ""
        auth = headers.get("authorization") or ""
        if not presented and auth[:7].lower() == "bearer ":
            presented = auth[7:].strip()
        if not presented:
            raise AuthError(401, "an API key is required (Authorization: Bearer KEY)")
        return self.check(presented)

    def check(self, presented: str) -> ApiKey:
        """The configured key ``presented`` is, or :class:`AuthError` 401."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: ApiKey | None = None
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise AuthError(401, "invalid API key")
        return found

    def named(self, name: str) -> ApiKey | None:
        for key in self.keys:
            if key.name == name:
                return key
        return None
