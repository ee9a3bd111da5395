"""Who may start crawls: API keys, and Pub/Sub push requests (OIDC or a shared secret).

API keys are random 256-bit tokens (``wfk_...``, made by ``wfcrawl api-key``);
only their SHA-256 digests are configured (``WFCRAWL_API_KEYS``). A fast hash
is enough for keys of that entropy (a slow password hash protects guessable
secrets); the presented key's digest is compared with every configured digest
in constant time.

Push requests carry a Google-signed OIDC token (``Authorization: Bearer``):
:class:`OIDCVerifier` checks its signature against the signing certificates
(fetched from ``certs_url`` and cached), expiry, then audience, issuer and
the subscription's service account. Tests point ``certs_url`` at certificates
of their own. :class:`SharedSecretVerifier` is the alternative: a secret in
the push endpoint's URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: ApiKey | None = None
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise AuthError(401, "invalid API key")
        return found


# ------------------------------------------------------------------ push

class PushVerifier(Protocol):
    def verify(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> None:
        """Return if the request comes from our subscription; raise :class:`AuthError` if not.

        ``headers`` have lower-case names.
        """


class SharedSecretVerifier:
    """The push endpoint URL carries ``?token=SECRET`` (configured in the subscription)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode("utf-8")

    def verify(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> None:
        given = (query.get("token") or [""])[0]
        if not given:
            raise AuthError(401, "the push token is missing (?token=...)")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._secret):
            raise AuthError(403, "wrong push token")


class OIDCVerifier:
    """Pub/Sub's authenticated push: a Google-signed ID token in ``Authorization``."""

    #: Seconds certificates are kept when the response has no ``max-age``, and
    #: the least time between two fetches triggered by an unknown key id.
    DEFAULT_MAX_AGE = 3600.0
    MIN_REFETCH = 30.0

    def __init__(
        self, *, audience: str, certs_url: str, issuers: Iterable[str],
        service_account: str = "", clock_skew: int = 10,
    ) -> None:
        if not audience:
            raise ConfigurationError("OIDC push authentication needs WFCRAWL_PUSH_AUDIENCE")
        self.audience = audience
        self.certs_url = certs_url
        self.issuers = frozenset(issuers)
        self.service_account = service_account
        self.clock_skew = clock_skew
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched = -self.MIN_REFETCH

    def _fetch(self) -> None:
        with urllib.request.urlopen(self.certs_url, timeout=10) as resp:
            certs = json.loads(resp.read())
            cache = resp.headers.get("Cache-Control", "")
        match = re.search(r"max-age=(\d+)", cache)
        self._certs = {str(k): str(v) for k, v in certs.items()}
        now = time.monotonic()
        self._fetched = now
        self._expires = now + (float(match.group(1)) if match else self.DEFAULT_MAX_AGE)

    def _certificates(self, key_id: str | None) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            stale = now >= self._expires
            # Google rotates keys: an unknown key id may be a new key.
            rotated = key_id is not None and key_id not in self._certs and now - self._fetched >= self.MIN_REFETCH
            if stale or rotated:
                try:
                    self._fetch()
                except (OSError, ValueError) as exc:
                    if not self._certs:
                        raise AuthError(503, f"cannot fetch the token signing certificates: {exc}") from None
            return self._certs

    def verify(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> None:
        from google.auth import jwt

        auth = headers.get("authorization") or ""
        if auth[:7].lower() != "bearer " or not auth[7:].strip():
            raise AuthError(401, "a bearer token is required")
        token = auth[7:].strip()
        try:
            header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=self._certificates(header.get("kid")), verify=True,
                audience=None, clock_skew_in_seconds=self.clock_skew,
            )
        except AuthError:
            raise
        except Exception as exc:  # google-auth raises ValueError subclasses, and others on garbage
            raise AuthError(401, f"invalid token: {exc}") from None
        # Signed by Google and current: now whether it is meant for us.
        if claims.get("aud") != self.audience:
            raise AuthError(403, "the token is for another audience")
        if claims.get("iss") not in self.issuers:
            raise AuthError(403, "the token has an unexpected issuer")
        if self.service_account and (
            claims.get("email") != self.service_account or claims.get("email_verified") is not True
        ):
            raise AuthError(403, "the token is not from the push subscription's service account")
