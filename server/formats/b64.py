"""Unpadded base64url (RFC 4648 section 5), as signed URLs, JWKs and internal tokens use it."""

from __future__ import annotations

import base64


def b64url_encode(data: bytes) -> str:
    """base64url without `=` padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded (or padded) base64url; raises ValueError when it is not base64url.

    Lenient as `base64.urlsafe_b64decode` is: characters outside the alphabet are skipped. Callers
    that need the one canonical encoding compare `b64url_encode` of the result with the input.
    """
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
