"""Who may push Pub/Sub messages: an OIDC token signed by Google, or a shared secret.

Push requests carry a Google-signed ID token (``Authorization: Bearer``).
:class:`OIDCVerifier` has google-auth check it (``google.oauth2.id_token.verify_token``:
the signature against Google's certificates, expiry with a little clock skew),
fetching the certificates through a ``requests`` session wrapped in CacheControl,
as google-auth's documentation advises: they are fetched again only when the
``Cache-Control: max-age`` of the last answer has passed. Then the claims are
checked against ours (audience, issuer, the subscription's service account), so
that a token signed for someone else is told apart (403) from a bad token (401).
Tests point ``certs_url`` at certificates of their own.

:class:`SharedSecretVerifier` is the alternative: a secret in the push endpoint's URL.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from scrapy.settings import BaseSettings

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.settings.table import read
from wfcrawl.web.auth import AuthError


class PushVerifier(Protocol):
    def verify(self, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
        """Return if the request comes from our subscription; raise :class:`AuthError` if not.

        ``headers`` are looked up case-insensitively (lower-case names).
        """


class SharedSecretVerifier:
    """The push endpoint URL carries ``?token=SECRET`` (configured in the subscription)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode("utf-8")

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
        given = query.get("token") or ""
        if not given:
            raise AuthError(401, "the push token is missing (?token=...)")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._secret):
            raise AuthError(403, "wrong push token")


class OIDCVerifier:
    """Pub/Sub's authenticated push: a Google-signed ID token in ``Authorization``.

    :meth:`verify` blocks while certificates are fetched: call it from a thread.
    """

    def __init__(
        self, *, audience: str, certs_url: str, issuers: Iterable[str],
        service_account: str = "", clock_skew: int = 10,
    ) -> None:
        import cachecontrol
        import google.auth.transport.requests
        import requests

        if not audience:
            raise ConfigurationError("OIDC push authentication needs WFCRAWL_PUSH_AUDIENCE")
        self.audience = audience
        self.certs_url = certs_url
        self.issuers = frozenset(issuers)
        self.service_account = service_account
        self.clock_skew = clock_skew
        session = cachecontrol.CacheControl(requests.Session())
        self._request = google.auth.transport.requests.Request(session=session)

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
        from google.auth import exceptions
        from google.oauth2 import id_token

        auth = headers.get("authorization") or ""
        if auth[:7].lower() != "bearer " or not auth[7:].strip():
            raise AuthError(401, "a bearer token is required")
        try:
            claims: Mapping[str, Any] = id_token.verify_token(
                auth[7:].strip(), self._request, audience=None, certs_url=self.certs_url,
                clock_skew_in_seconds=self.clock_skew,
            )
        except exceptions.TransportError as exc:
            raise AuthError(503, f"cannot fetch the token signing certificates: {exc}") from None
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


class _All:
    def __init__(self, verifiers: list[PushVerifier]) -> None:
        self.verifiers = verifiers

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str]) -> None:
        for verifier in self.verifiers:
            verifier.verify(headers, query)


def push_verifier(settings: BaseSettings) -> PushVerifier:
    """OIDC (``WFCRAWL_PUSH_AUDIENCE``) or a shared secret (``WFCRAWL_PUSH_SECRET``); both: both."""
    verifiers: list[PushVerifier] = []
    audience = read(settings, "WFCRAWL_PUSH_AUDIENCE")
    if audience:
        verifiers.append(OIDCVerifier(
            audience=audience, certs_url=read(settings, "WFCRAWL_PUSH_CERTS_URL"),
            issuers=read(settings, "WFCRAWL_PUSH_ISSUERS"),
            service_account=read(settings, "WFCRAWL_PUSH_SERVICE_ACCOUNT"),
        ))
    secret = read(settings, "WFCRAWL_PUSH_SECRET")
    if secret:
        verifiers.append(SharedSecretVerifier(secret))
    if not verifiers:
        raise ConfigurationError(
            "WFCRAWL_PUSH_ENABLED needs WFCRAWL_PUSH_AUDIENCE (OIDC) or WFCRAWL_PUSH_SECRET: "
            "an unauthenticated push endpoint would start crawls for anyone"
        )
    return verifiers[0] if len(verifiers) == 1 else _All(verifiers)
