"""Bearer-token check for every endpoint except /health."""

from __future__ import annotations

import hmac

from .errors import Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dtma-agent"'}


class TokenGuard:
    """Compares a request's bearer token with the toolbox's, in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def check(self, authorization: str) -> None:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized("a bearer token is required", headers=_CHALLENGE)
        if not hmac.compare_digest(presented.strip().encode(), self._expected):
            raise Unauthorized("the bearer token is not valid for this toolbox", headers=_CHALLENGE)
