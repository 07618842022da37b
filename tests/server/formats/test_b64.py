"""The one base64url helper (signed URLs, ClearKey JWKs, internal tokens)."""

from __future__ import annotations

import base64

import pytest

from server.formats.b64 import b64url_decode, b64url_encode


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xfb\xff", b"\xfb\xff\xfe", bytes(range(256))])
def test_encode_is_unpadded_base64url_and_decodes_back(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(text) == data
    assert b64url_decode(base64.urlsafe_b64encode(data).decode()) == data  # padding is optional


@pytest.mark.parametrize("text", ["a", "abcde", "ab!c"])
def test_text_that_is_not_base64url_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        b64url_decode(text)
