"""Hashing and comparing the secrets a client presents (session cookies,
CSRF tokens, API keys, bearer tokens, signatures).

A presented secret is whatever text arrived: aiohttp keeps header bytes that
are not UTF-8 as surrogate escapes, and JSON can hold a lone surrogate
(`"\\ud800"`). Neither may make a check raise (a 500 for anyone who sends
one byte): such text is encoded with "surrogatepass", which never fails and
never equals the encoding of a real secret.
"""

from __future__ import annotations

import hashlib
import hmac


def as_bytes(secret: str) -> bytes:
    """`secret` as UTF-8, any surrogate encoded as itself: never raises."""
    return secret.encode("utf-8", "surrogatepass")


def digest(secret: str) -> str:
    """SHA-256 of the secret, in hex: what the store keeps in its place."""
    return hashlib.sha256(as_bytes(secret)).hexdigest()


def same(presented: str, expected: str) -> bool:
    """Whether two secrets are equal, in time that does not depend on where
    they differ (hmac.compare_digest; on str it refuses non-ASCII text)."""
    return hmac.compare_digest(as_bytes(presented), as_bytes(expected))
