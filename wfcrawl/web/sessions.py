"""Dashboard sessions: a signed cookie after signing in with an API key, and CSRF tokens.

The cookie (``wfcrawl_session``) holds the signed-in key's *name* and a
fingerprint of its current digest (never the key), a CSRF token, and the time
it was signed (itsdangerous, HMAC with ``WFCRAWL_WEB_SECRET_KEY``). It is
``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the request came over https
(directly or through a trusted proxy), scoped to the root path, and expires
after ``WFCRAWL_WEB_SESSION_MAX_AGE`` seconds; a session also ends when its key
is removed from ``WFCRAWL_API_KEYS`` or replaced.

Every POST from the browser carries the session's CSRF token (the hidden form
field ``csrf_token``, or the ``X-CSRF-Token`` header for scripts such as htmx);
:func:`check_csrf` refuses it otherwise (403). The sign-in form has a token too:
a visitor gets an anonymous session (a token, no key) with the form, and a new
session, with a new token, once signed in.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from wfcrawl.web.auth import ApiKey, ApiKeyAuth
from wfcrawl.web.problems import ProblemError

COOKIE = "wfcrawl_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    csrf: str
    key: str | None = None  # the signed-in key's name
    fingerprint: str | None = None


class Sessions:
    def __init__(self, secret: str, max_age: int, auth: ApiKeyAuth) -> None:
        self.max_age = max_age
        self.auth = auth
        self._serializer = URLSafeTimedSerializer(secret, salt="wfcrawl-session")

    def read(self, request: Request) -> Session | None:
        """The request's session, if its cookie is ours, intact and not expired."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # includes SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        return Session(data["c"], data.get("k"), data.get("f"))

    def user(self, session: Session | None) -> ApiKey | None:
        """The key a session is signed in with, while that key is still configured as it was."""
        if session is None or session.key is None:
            return None
        key = self.auth.named(session.key)
        if key is None or not hmac.compare_digest(key.fingerprint, session.fingerprint or ""):
            return None
        return key

    @staticmethod
    def anonymous() -> Session:
        return Session(secrets.token_urlsafe(32))

    @staticmethod
    def signed_in(key: ApiKey) -> Session:
        return Session(secrets.token_urlsafe(32), key.name, key.fingerprint)

    def write(self, response: Response, request: Request, session: Session) -> None:
        value = self._serializer.dumps({"c": session.csrf, "k": session.key, "f": session.fingerprint})
        response.set_cookie(
            COOKIE, value, max_age=self.max_age, path=_cookie_path(request), httponly=True, samesite="lax",
            secure=request.url.scheme == "https",
        )

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(COOKIE, path=_cookie_path(request), httponly=True, samesite="lax",
                               secure=request.url.scheme == "https")


def _cookie_path(request: Request) -> str:
    return (request.scope.get("root_path") or "") + "/"


async def check_csrf(request: Request, session: Session | None) -> None:
    """A browser POST must carry its session's CSRF token (403 otherwise)."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if session is None or not given or not hmac.compare_digest(given, session.csrf):
        raise ProblemError(403, "the form's CSRF token is missing or wrong: reload the page and try again",
                           kind="csrf")
