"""Short-lived stream tokens: what a browser's EventSource puts in the stream's URL instead of the API
key (EventSource cannot send an Authorization header).

A token is ``<expiry ms>.<nonce>.<signature>``, the signature an HMAC-SHA256 of the first two parts
under a key derived from the API key. Nothing is stored: any process holding the same API key checks
it, a changed API key voids every token, and a token grants nothing but opening a stream before it
expires. It is no secret worth logging either way, but it leaves the logs anyway (the request log
prints paths, never query strings).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

_PURPOSE = b"ai-trading-backend stream token v1\x00"


@dataclass(frozen=True, slots=True)
class StreamToken:
    token: str
    expires_at: int  # epoch ms


def _signature(api_key: str, body: str) -> str:
    key = hashlib.sha256(_PURPOSE + api_key.encode()).digest()
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def issue(api_key: str, now_ms: int, ttl_ms: int) -> StreamToken:
    expires = now_ms + ttl_ms
    body = f"{expires}.{secrets.token_hex(8)}"
    return StreamToken(f"{body}.{_signature(api_key, body)}", expires)


def verify(api_key: str, token: str, now_ms: int) -> bool:
    """True for a token this API key signed that has not expired; False for anything else."""
    expires, dot, rest = token.partition(".")
    nonce, dot2, signature = rest.partition(".")
    if not (dot and dot2 and expires.isdigit() and nonce and signature):
        return False
    if not hmac.compare_digest(signature.encode(), _signature(api_key, f"{expires}.{nonce}").encode()):
        return False
    return now_ms < int(expires)
