"""API keys of source systems and read tokens: stored hashed, compared in constant time.

A key is never kept, logged or echoed: settings hold its SHA-256, and a presented key is hashed
and compared with every stored hash (no early exit), so timing tells nothing about which key or
how much of it matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import BaseModel, Field

from .registry import Registry


class ApiKey(BaseModel):
    name: str = Field(min_length=1, description="The source system, e.g. 'motcua-camau'")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the key, hex")
    units: list[str] | None = Field(
        default=None,
        description="Units this key may send events for; a parent code covers its descendants. "
        "None = every unit.",
    )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return "dvp_" + secrets.token_urlsafe(32)


def match_hash(presented: str | None, hashes: list[str]) -> int | None:
    """Index of the stored hash the presented secret matches, in constant time."""
    if not presented:
        return None
    digest = hash_secret(presented).encode()
    found = None
    for index, stored in enumerate(hashes):
        if hmac.compare_digest(digest, stored.encode()) and found is None:
            found = index
    return found


def allowed_units(key: ApiKey, registry: Registry) -> frozenset[str] | None:
    if key.units is None:
        return None
    codes: set[str] = set()
    for code in key.units:
        if code in registry.units:
            codes.add(code)
            codes.update(registry.descendants(code))
    return frozenset(codes)


def presented_secret(headers: dict[str, str] | object, header: str = "x-api-key") -> str | None:
    get = headers.get  # type: ignore[attr-defined]
    value = get(header)
    if value:
        return str(value)
    auth = get("authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None
