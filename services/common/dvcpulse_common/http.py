"""HTTP pieces shared by the services' apps."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from .auth import match_hash, presented_secret

TOKEN_COOKIE = "dvcpulse_token"


class ReadTokenMiddleware:
    """Require a read token on `/api/` paths when tokens are configured (pure ASGI, so server-sent
    events stream through untouched). Health, metrics and static files stay open."""

    def __init__(self, app: Any, token_hashes: list[str]) -> None:
        self.app = app
        self.token_hashes = token_hashes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.token_hashes and scope["path"].startswith("/api/"):
            headers = Headers(scope=scope)
            secret = presented_secret(headers)
            if secret is None:
                for part in headers.get("cookie", "").split(";"):
                    name, _, value = part.strip().partition("=")
                    if name == TOKEN_COOKIE:
                        secret = value
            if match_hash(secret, self.token_hashes) is None:
                response = JSONResponse(
                    {
                        "detail": "missing or unknown read token: send 'Authorization: Bearer <token>'"
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
