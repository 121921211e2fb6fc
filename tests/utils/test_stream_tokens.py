"""Stream tokens: signed by the API key, valid until they expire, worthless once altered."""

from __future__ import annotations

import pytest

from utils import stream_tokens

KEY = "an-api-key-0123456789"
NOW = 1_700_000_000_000
TTL = 300_000


def test_a_token_is_valid_until_it_expires() -> None:
    issued = stream_tokens.issue(KEY, NOW, TTL)
    assert issued.expires_at == NOW + TTL
    assert stream_tokens.verify(KEY, issued.token, NOW)
    assert stream_tokens.verify(KEY, issued.token, NOW + TTL - 1)
    assert not stream_tokens.verify(KEY, issued.token, NOW + TTL)
    assert KEY not in issued.token
    assert stream_tokens.issue(KEY, NOW, TTL).token != issued.token, "each token is new"


def _altered(token: str) -> list[str]:
    expires, nonce, signature = token.split(".")
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return [
        f"{int(expires) + 1}.{nonce}.{signature}",  # a longer life
        f"{expires}.{nonce}x.{signature}",
        f"{expires}.{nonce}.{flipped}",
        f"{expires}.{nonce}",
        f"{expires}..{signature}",
        "",
        "...",
        "not a token",
    ]


@pytest.mark.parametrize("index", range(8))
def test_an_altered_token_is_refused(index: int) -> None:
    token = stream_tokens.issue(KEY, NOW, TTL).token
    assert not stream_tokens.verify(KEY, _altered(token)[index], NOW)


def test_another_api_key_voids_the_token() -> None:
    token = stream_tokens.issue(KEY, NOW, TTL).token
    assert not stream_tokens.verify(KEY + "!", token, NOW)
