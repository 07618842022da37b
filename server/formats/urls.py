"""URL rules both ends share: where a signed path keeps its token, how to hide it, and the host
to write in a URL for a bind address."""

from __future__ import annotations

from urllib.parse import urlsplit

SIGNED_PREFIX = "/s/"  # a signed path is /s/<token>/<title>/<file> (server/urlsign.py)
_REDACTED = SIGNED_PREFIX + "<token>/"


def redact_path(path: str) -> str:
    """The path with everything between `/s/` and the next `/` shown as `<token>`: tokens are
    credentials, so they stay out of logs and error messages (even a truncated one)."""
    if not path.startswith(SIGNED_PREFIX):
        return path
    _, _, rest = path[len(SIGNED_PREFIX):].partition("/")
    return _REDACTED + rest


def redact_url(url: str) -> str:
    """`scheme://host/path` of a URL, with a signed path's token redacted (query and fragment dropped)."""
    parts = urlsplit(url)
    path = redact_path(parts.path)
    return f"{parts.scheme}://{parts.netloc}{path}" if parts.netloc else path


def url_host(host: str) -> str:
    """The host to put in URLs for a bind address (a wildcard bind is reached via loopback here)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
