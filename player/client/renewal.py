"""Keeping a session's credentials alive while it plays: a stack signs segment URLs for minutes, not
for the length of a movie, and access tokens last minutes too.

`keep_alive(fetcher, source)` runs beside the player: before half of a URL lifetime has passed it asks
the playback API for fresh URLs (`POST {gateway}/playback/{title}/renew`), and every later request
goes out with the new URL token (the fetcher's route swaps it in, so the manifest's URLs stay as
parsed); before half of an access token's lifetime it refreshes the token (`POST /auth/refresh`, which
also rotates the refresh token), and a renewal refused with 401 refreshes first and tries once more.
A renewal that fails is retried with backoff while the URLs are still valid; one refused for good
(403: the title was taken away) stops, and the segments then fail with that answer.

A renewal answer also carries the steering's current ranking of edges (its `manifest_urls`, best
first). The player adopts it (`EdgeRanking`): from then on it fails over along that ranking, the
edges steering no longer lists last, so after a region outage it stays on the edges steering now
prefers instead of going back to its old ones when their exclusion ends, and returns to them when
steering lists them first again. A failover away from a first edge that failed (the fetcher excluded it:
no connection, a timeout, a 5xx) means the ranking the player holds is stale, so it renews at once
(no sooner than `FAILOVER_RENEW_GAP_S` after the previous renewal, spacing out while steering has not
noticed) rather than at half the URL lifetime; a live player's manifest refreshes follow the ranking too
(`EdgeRanking.manifest_urls`). A first edge that is up but answers 404 (it lacks the object) is not a
reason to renew the playback grant: the URLs are valid and the edge is healthy. It asks for one early
renewal per ranking (the title may have moved, and steering would then rank another edge first), not
one every few seconds for as long as that edge keeps answering 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from player.client.fetch import Fetcher, FetchError, Route
from server.formats.urls import signed_token, with_signed_token

log = logging.getLogger("abrkit.player")

RENEW_AT = 0.5  # of a lifetime: renew when half of it is gone
RETRY_S = (0.5, 1.0, 2.0, 4.0)  # waits between failed renewals, the last repeated
# Early renewals after failovers are at least this far apart (clock seconds): a region outage fails
# every request for a while, and the steering needs a heartbeat or two to notice it.
FAILOVER_RENEW_GAP_S = 1.0


def origin_of(url: str) -> str:
    """scheme://host:port of `url` (an edge)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class EdgeRanking:
    """The edges a session fails over along, best first: the bootstrap's order (`manifest_urls`, the
    edge the MPD came from first) until a renewal answer brings the steering's new ranking (`adopt`);
    edges it no longer lists stay at the back, as a last resort."""

    def __init__(self, manifest_urls: Sequence[str]) -> None:
        self.started = tuple(dict.fromkeys(origin_of(u) for u in manifest_urls))
        self.ranking = self.started  # the steering's latest ranking
        self.order = self.started  # what the player tries, in this order
        self.changes = 0

    def adopt(self, manifest_urls: Sequence[str]) -> bool:
        """Follow the ranking of a renewal answer's `manifest_urls` from the next request on; True if it
        changed the order."""
        ranking = tuple(dict.fromkeys(origin_of(u) for u in manifest_urls))
        if not ranking or ranking == self.ranking:
            return False
        self.ranking = ranking
        order = tuple(dict.fromkeys((*ranking, *self.started)))
        if order == self.order:
            return False
        self.order = order
        self.changes += 1
        return True

    def manifest_urls(self, bootstrap_urls: Sequence[str]) -> list[str]:
        """The MPD's URLs (`bootstrap_urls`: one per edge, as the bootstrap listed them) in the current
        order: on each edge its own bootstrap URL, on an edge the bootstrap did not list the first
        URL's path; URLs on no ranked edge last."""
        if not bootstrap_urls:
            return []
        own = {origin_of(u): u for u in reversed(bootstrap_urls)}
        first = urlsplit(bootstrap_urls[0])
        ranked = [own.get(o) or first._replace(scheme=urlsplit(o).scheme, netloc=urlsplit(o).netloc).geturl()
                  for o in self.order]
        return list(dict.fromkeys((*ranked, *bootstrap_urls)))

    def is_failover(self, url: str) -> bool:
        """Whether fetching `url` means the player has left the steering's first edge: it is on a
        ranked edge but not the first (the first failed, lacks the object, or is excluded)."""
        return origin_of(url) in self.order[1:]

    def alternatives(self, url: str) -> list[str]:
        """`url` (on the edge the MPD came from; its path is the same on every edge) on each edge in
        the current order; any other URL alone."""
        parts = urlsplit(url)
        if not self.started or f"{parts.scheme}://{parts.netloc}" != self.started[0]:
            return [url]
        return [parts._replace(scheme=urlsplit(o).scheme, netloc=urlsplit(o).netloc).geturl() for o in self.order]


@dataclass(frozen=True, kw_only=True, slots=True)
class StackSession:
    """What a session started through a stack's gateway needs to stay alive (from `bootstrap_stack`)."""

    gateway_url: str
    title: str
    session_id: str
    url_token: str = field(repr=False)  # the token of the signed manifest URLs
    urls_expire_in_s: float
    access_token: str = field(repr=False)
    access_expires_in_s: float
    refresh_token: str | None = field(default=None, repr=False)
    region: str | None = None  # the client region the player says it is in (`?region=`, server/regions.py)
    # The order the player fails over along; renewals update it (None: the bootstrap's, for good).
    edges: EdgeRanking | None = field(default=None, compare=False, repr=False)


def manifest_urls_now(session: StackSession | None, bootstrap_urls: Sequence[str]) -> list[str]:
    """The MPD's URLs in the order to fetch them now (a live player's refresh): the steering's latest
    ranking for a session that renews with a stack, else the bootstrap's order."""
    if session is None or session.edges is None:
        return list(bootstrap_urls)
    return session.edges.manifest_urls(bootstrap_urls)


def playback_url(gateway_url: str, title: str, region: str | None, *, renew: bool = False) -> str:
    """The playback API's URL for `title` (its renewal with `renew`), saying the client's region if known."""
    url = f"{gateway_url.rstrip('/')}/playback/{quote(title, safe='')}" + ("/renew" if renew else "")
    return url + (f"?region={quote(region, safe='')}" if region else "")


class RenewalRefused(Exception):
    """The stack said no for good (not a transient failure): renewing stops."""


class SessionRenewal:
    """The current URL token and access token of one session, and the loop that renews them.
    `clock` is monotonic seconds."""

    def __init__(self, fetcher: Fetcher, session: StackSession, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fetcher = fetcher
        self.session = session
        self.clock = clock
        now = clock()
        self.url_token = session.url_token
        self.access_token = session.access_token
        self._refresh_token = session.refresh_token
        self._urls = (now, session.urls_expire_in_s)  # (issued at, lifetime)
        self._access = (now, session.access_expires_in_s)
        self.renewals = 0
        self.early_renewals = 0  # of them, renewals a failover brought forward
        self.refreshes = 0
        self.stopped: str | None = None  # why renewing stopped for good
        self._failover = asyncio.Event()  # a request left the first edge since the last renewal
        self._asked_for_lacking: tuple[str, ...] | None = None  # the ranking a 404 failover last asked about
        self._renewed_at = now
        # Early renewals that bring no new ranking (steering has not noticed yet) space out, doubling.
        self._gap_s = FAILOVER_RENEW_GAP_S

    def route(self, inner: Route | None) -> Route:
        """A fetcher route that sends signed URLs with the current token, then on through `inner`; a
        request that fails over from the steering's first edge asks for an early renewal (when that
        edge failed; once per ranking when it only lacked the object)."""
        async def routed(url: str) -> str:
            edges = self.session.edges
            if edges is not None and edges.is_failover(url):
                if self.fetcher.excluded(edges.order[0]):  # the first edge failed: steering will move
                    self._failover.set()
                elif self._asked_for_lacking != edges.order:  # it lacks the object: ask once per ranking
                    self._asked_for_lacking = edges.order
                    self._failover.set()
            url = with_signed_token(url, self.url_token)
            return await inner(url) if inner is not None else url

        return routed

    def _due_s(self, issued_lifetime: tuple[float, float]) -> float:
        issued, lifetime = issued_lifetime
        return issued + RENEW_AT * lifetime - self.clock()

    async def run(self) -> None:
        """Renew until cancelled (or refused for good)."""
        failures = 0
        asked = False  # a failover asked for a renewal before it is due
        while True:
            due = [self._due_s(self._urls)] + ([self._due_s(self._access)] if self._refresh_token else [])
            wait_s = min(due) if failures == 0 else RETRY_S[min(failures, len(RETRY_S)) - 1]
            asked = await self._wait(wait_s) or asked
            try:
                if self._due_s(self._access) <= 0 and self._refresh_token is not None:
                    await self.refresh()
                early = self._due_s(self._urls) > 0
                if asked or not early:
                    reranked = await self.renew()
                    self.early_renewals += early
                    if early:  # space out early renewals while steering has not noticed
                        self._gap_s = FAILOVER_RENEW_GAP_S if reranked else min(2 * self._gap_s, self._urls[1] / 2)
                asked = False
                failures = 0
            except RenewalRefused as exc:
                self.stopped = str(exc)
                log.warning("session %s: renewing stopped: %s", self.session.session_id, exc)
                return
            except FetchError as exc:
                failures += 1
                log.warning("session %s: renewal failed (%s); trying again", self.session.session_id, exc)

    async def _wait(self, wait_s: float) -> bool:
        """Sleep `wait_s`, or less if a failover asks for an early renewal (True), no sooner than
        `FAILOVER_RENEW_GAP_S` after the previous renewal (twice that after an early renewal that did
        not change the ranking, and so on)."""
        deadline = self.clock() + wait_s
        try:
            await asyncio.wait_for(self._failover.wait(), max(0.0, wait_s))
        except TimeoutError:
            return False
        gap_s = self._renewed_at + self._gap_s - self.clock()
        remaining_s = deadline - self.clock()
        if gap_s >= remaining_s:  # the renewal that is due anyway comes first
            await asyncio.sleep(max(0.0, remaining_s))
            return False
        await asyncio.sleep(max(0.0, gap_s))
        return True

    async def renew(self) -> bool:
        """Fresh signed URLs for the session (refreshing the access token first if the stack asks);
        True if their answer re-ranked the edges."""
        s = self.session
        url = playback_url(s.gateway_url, s.title, s.region, renew=True)
        self._failover.clear()  # failovers until now are answered by this renewal's ranking
        try:
            answer = await self._post(url, {"session_id": s.session_id}, auth=True)
        except FetchError as exc:
            if exc.status != 401 or self._refresh_token is None:
                raise self._final(exc, "URL renewal") from None
            await self.refresh()
            answer = await self._post(url, {"session_id": s.session_id}, auth=True)
        urls = answer.get("manifest_urls")
        token = signed_token(urls[0]) if isinstance(urls, list) and urls and isinstance(urls[0], str) else None
        expires_in = answer.get("expires_in")
        if token is None or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            raise RenewalRefused("URL renewal: the answer has no signed URL and lifetime")
        self.url_token, self._urls = token, (self.clock(), float(expires_in))
        self.renewals += 1
        self._renewed_at = self.clock()
        assert isinstance(urls, list)
        edges = self.session.edges
        if edges is not None and all(isinstance(u, str) for u in urls) and edges.adopt(urls):
            log.info("session %s: steering re-ranked the edges: %s", s.session_id, ", ".join(edges.order))
            return True
        return False

    async def refresh(self) -> None:
        """A new access token (and refresh token) from the refresh token."""
        if self._refresh_token is None:
            raise RenewalRefused("no refresh token to renew the access token with")
        try:
            answer = await self._post(f"{self.session.gateway_url}/auth/refresh",
                                      {"refresh_token": self._refresh_token}, auth=False)
        except FetchError as exc:
            raise self._final(exc, "token refresh") from None
        access, refresh, expires_in = answer.get("access_token"), answer.get("refresh_token"), answer.get("expires_in")
        if not isinstance(access, str) or not isinstance(refresh, str) or not isinstance(expires_in, (int, float)):
            raise RenewalRefused("token refresh: the answer has no tokens")
        self.access_token, self._refresh_token = access, refresh
        self._access = (self.clock(), float(expires_in))
        self.refreshes += 1

    @staticmethod
    def _final(exc: FetchError, step: str) -> Exception:
        """A definitive refusal ends renewing; anything else is retried."""
        return RenewalRefused(f"{step}: HTTP {exc.status}") if exc.permanent else exc

    async def _post(self, url: str, body: dict[str, object], *, auth: bool) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {self.access_token}"} if auth else {}
        result = await self.fetcher.fetch([url], method="POST", json_body=body, headers=headers)
        try:
            data = json.loads(result.body)
        except ValueError:
            raise RenewalRefused(f"{url.rsplit('/', 1)[-1]}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise RenewalRefused(f"{url.rsplit('/', 1)[-1]}: unexpected answer")
        return data


@contextlib.asynccontextmanager
async def keep_alive(fetcher: Fetcher, session: StackSession | None) -> AsyncIterator[SessionRenewal | None]:
    """Renew `session`'s URLs and token while the body runs (nothing for a session without a stack)."""
    if session is None:
        yield None
        return
    renewal = SessionRenewal(fetcher, session)
    previous = fetcher.route
    fetcher.route = renewal.route(previous)
    task = asyncio.get_running_loop().create_task(renewal.run(), name=f"renew-{session.session_id}")
    try:
        yield renewal
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        fetcher.route = previous


def stack_session(gateway_url: str, title: str, session_id: str, manifest_url: str, *, urls_expire_in_s: object,
                  access_token: str, access_expires_in_s: object, refresh_token: object,
                  region: str | None = None, edge_urls: Sequence[str] = ()) -> StackSession | None:
    """The `StackSession` of a bootstrap's answers; None when they do not allow renewing (a stack that
    signs no URLs or gives no lifetimes: nothing to keep alive). `edge_urls`: the manifest URLs in
    the player's failover order, which renewals re-rank."""
    token = signed_token(manifest_url)
    if token is None or not isinstance(urls_expire_in_s, (int, float)) or urls_expire_in_s <= 0:
        return None
    access_ttl = float(access_expires_in_s) if isinstance(access_expires_in_s, (int, float)) else 900.0
    return StackSession(gateway_url=gateway_url.rstrip("/"), title=title, session_id=session_id, url_token=token,
                        urls_expire_in_s=float(urls_expire_in_s), access_token=access_token,
                        access_expires_in_s=access_ttl,
                        refresh_token=refresh_token if isinstance(refresh_token, str) else None, region=region,
                        edges=EdgeRanking(edge_urls) if edge_urls else None)
