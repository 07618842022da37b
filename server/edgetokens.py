"""A verified URL token as an edge remembers it, and the revocation checks of its login.

Verifying a token's signature is the costliest step of a cache hit, and a player asks for many
objects with one token, so each grant is remembered (server/edge.py); whether its login was ended
since it was signed is asked of the revocation store at most every `revocation_recheck_s`.
"""

from __future__ import annotations

import asyncio
import time

from server.revocation import RevocationStore
from server.urlsign import UrlGrant


class VerifiedToken:
    """A verified URL token: its grant, and the last revocation check of its login."""

    __slots__ = ("grant", "checked_at_s", "revoked", "pending")

    def __init__(self, grant: UrlGrant) -> None:
        self.grant = grant
        self.checked_at_s: float | None = None  # monotonic, when the last answer was asked for
        self.revoked = False
        self.pending: asyncio.Future[bool] | None = None


def check_revocation(verified: VerifiedToken, store: RevocationStore) -> asyncio.Future[bool]:
    """The store's answer for this token's login, asked once however many requests wait for it; the
    answer is recorded as of when it was asked (so a revocation is never seen later than it could be).
    A failure (`StoreUnavailable`) reaches those who wait and records nothing: the next request asks."""
    if verified.pending is not None:
        return verified.pending
    grant = verified.grant
    asked_at_s = time.monotonic()
    pending = verified.pending = asyncio.ensure_future(store.run(
        lambda: store.url_revoked(family=grant.family, subject=grant.subject, issued_at=grant.issued_at)))

    def done(future: asyncio.Future[bool]) -> None:
        if verified.pending is future:
            verified.pending = None
        if not future.cancelled() and future.exception() is None:
            verified.revoked, verified.checked_at_s = future.result(), asked_at_s

    pending.add_done_callback(done)
    return pending
