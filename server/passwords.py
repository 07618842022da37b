"""Password hashes: scrypt (RFC 7914) with a fresh salt, parameters from `PasswordPolicy`.

A hash is `scrypt$N$r$p$<salt b64>$<hash b64>`, so hashes made under older parameters still verify
and `needs_rehash` says when to replace one (auth does it at the user's next successful login).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from server.config import PasswordPolicy

_HASH_BYTES = 32
_MAX_MEMORY_BYTES = 256 * 1024 * 1024


def hash_password(password: str, *, policy: PasswordPolicy = PasswordPolicy(), salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$<salt b64>$<hash b64>` with a fresh 16-byte salt."""
    if not password:
        raise ValueError("password must not be empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=policy.n, r=policy.r,
                            p=policy.p, dklen=_HASH_BYTES, maxmem=_MAX_MEMORY_BYTES)
    return "$".join(["scrypt", str(policy.n), str(policy.r), str(policy.p),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def _parameters(stored: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
    if scheme != "scrypt":
        raise ValueError("not an scrypt hash")
    return int(n), int(r), int(p), base64.b64decode(salt_b64), base64.b64decode(hash_b64)


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the scrypt hash `stored` (constant-time compare)."""
    try:
        n, r, p, salt, expected = _parameters(stored)
        digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                                dklen=len(expected), maxmem=_MAX_MEMORY_BYTES)
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


def needs_rehash(stored: str, policy: PasswordPolicy) -> bool:
    """Whether `stored` was made with other parameters than `policy`'s."""
    try:
        n, r, p, _, _ = _parameters(stored)
    except ValueError:
        return True
    return (n, r, p) != (policy.n, policy.r, policy.p)


def dummy_hash(policy: PasswordPolicy) -> str:
    """Checked against when the user does not exist, so that unknown users cost as much time as known ones:
    a well-formed hash with `policy`'s parameters (verifying it costs one scrypt, like a real user's) and
    a random digest no password can match (2**-256). Made without running scrypt, so a starting auth
    service does not spend a hash on it."""
    return "$".join(["scrypt", str(policy.n), str(policy.r), str(policy.p),
                     base64.b64encode(secrets.token_bytes(16)).decode(),
                     base64.b64encode(secrets.token_bytes(_HASH_BYTES)).decode()])
