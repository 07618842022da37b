"""URL rules both ends share: where a signed path keeps its token, how to hide tokens, how a player
swaps in a renewed one, and the host to write in a URL for a bind address."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SIGNED_PREFIX = "/s/"  # a signed path is /s/<token>/<title>/<file> (server/urlsign.py)
REDACTED = "<token>"
# What a credential in a path looks like: base64url parts joined by dots (a signed-URL token has two,
# a JWT three), one of them at least as long as a 256-bit MAC or signature in base64url (43 chars).
_DOTTED_B64URL = re.compile(r"[A-Za-z0-9_=-]*(\.[A-Za-z0-9_=-]*)+")
_LONG_PART = re.compile(r"(^|\.)[A-Za-z0-9_-]{43,}=*(\.|$)")


def _token_shaped(part: str) -> bool:
    return _DOTTED_B64URL.fullmatch(part) is not None and _LONG_PART.search(part) is not None


def redact_path(path: str) -> str:
    """The path with every credential-like segment shown as `<token>`: the segment after an `s`
    segment (any case, wherever it is, with or without a slash after it) and any segment shaped like
    a token. Tokens are credentials, so they stay out of logs and error messages."""
    parts = path.split("/")
    after_s = False
    for i, part in enumerate(parts):
        if part and (after_s or _token_shaped(part)):
            parts[i] = REDACTED
        after_s = part.lower() == "s"
    return "/".join(parts)


def redact_url(url: str) -> str:
    """`scheme://host/path` of a URL, with credential-like path segments redacted (query and fragment dropped)."""
    parts = urlsplit(url)
    path = redact_path(parts.path)
    return f"{parts.scheme}://{parts.netloc}{path}" if parts.netloc else path


def signed_token(url: str) -> str | None:
    """The token of a signed URL (`.../s/<token>/...`), None if it has none."""
    path = urlsplit(url).path
    if not path.startswith(SIGNED_PREFIX):
        return None
    token, slash, _ = path[len(SIGNED_PREFIX):].partition("/")
    return token if slash and token else None


def with_signed_token(url: str, token: str) -> str:
    """`url` with its signed-path token replaced by `token` (unchanged if it is not signed)."""
    old = signed_token(url)
    if old is None or old == token:
        return url
    parts = urlsplit(url)
    path = SIGNED_PREFIX + token + parts.path[len(SIGNED_PREFIX) + len(old):]
    return urlunsplit(parts._replace(path=path))


def url_host(host: str) -> str:
    """The host to put in URLs for a bind address (a wildcard bind is reached via loopback here)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
