"""Server-side fault injection for chaos runs: latency before the first byte, or a burst of 5xx.

An edge installs `fault_middleware(state)` and `add_fault_routes(...)`; nothing happens until a
holder of the stack's internal credential POSTs a fault to `/internal/faults` (loopback alone is not
enough), and each fault ends by itself after `duration_s`. While none is set, the middleware costs
one attribute check per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from server.httpapi import json_error, read_json_body
from server.observability import Handler, add_log_fields

FAULTS_PATH = "/internal/faults"
MAX_DELAY_S = 60.0
MAX_DURATION_S = 3600.0
MAX_BODY_BYTES = 4096


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultSpec:
    """One fault: requests whose path starts with `path_prefix` wait `delay_s` before being handled
    (a slow first byte), then `error_ratio` of them are answered `error_status` instead; for
    `duration_s` wall seconds from when it is set."""

    delay_s: float = 0.0
    error_status: int | None = None
    error_ratio: float = 1.0
    duration_s: float = 10.0
    path_prefix: str = "/s/"

    def __post_init__(self) -> None:
        if not 0.0 <= self.delay_s <= MAX_DELAY_S:
            raise ValueError(f"delay_s must be in [0, {MAX_DELAY_S:g}]")
        if self.error_status is not None and not 500 <= self.error_status <= 599:
            raise ValueError("error_status must be a 5xx status or null")
        if not 0.0 < self.error_ratio <= 1.0:
            raise ValueError("error_ratio must be in (0, 1]")
        if not 0.0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S:g}]")
        if not self.path_prefix.startswith("/") or len(self.path_prefix) > 256:
            raise ValueError("path_prefix must start with '/' (at most 256 characters)")
        if self.delay_s == 0.0 and self.error_status is None:
            raise ValueError("a fault needs delay_s > 0 or an error_status")


def fault_from_json(body: object) -> FaultSpec:
    """A `FaultSpec` from a JSON object; `ValueError` naming the problem."""
    if not isinstance(body, dict):
        raise ValueError("fault must be a JSON object")
    known = set(FaultSpec.__dataclass_fields__)
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(map(str, unknown))}")
    for name in ("delay_s", "error_ratio", "duration_s"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name} must be a number")
    status = body.get("error_status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise ValueError("error_status must be an integer or null")
    if not isinstance(body.get("path_prefix", "/"), str):
        raise ValueError("path_prefix must be a string")
    return FaultSpec(**body)


class FaultState:
    """The fault in force on one app (None: none). Errors are spread evenly: with ratio r, the
    n-th matching request fails when floor(n r) grows (deterministic, no random source)."""

    def __init__(self) -> None:
        self.spec: FaultSpec | None = None
        self.until_s = 0.0
        self.matched = 0
        self.injected_errors = 0

    def set(self, spec: FaultSpec, now_s: float) -> None:
        self.spec, self.until_s, self.matched, self.injected_errors = spec, now_s + spec.duration_s, 0, 0

    def clear(self) -> None:
        self.spec = None

    def current(self, path: str, now_s: float) -> FaultSpec | None:
        spec = self.spec
        if spec is None:
            return None
        if now_s >= self.until_s:
            self.spec = None
            return None
        return spec if path.startswith(spec.path_prefix) else None

    def take_error(self, spec: FaultSpec) -> bool:
        before = int(self.matched * spec.error_ratio)
        self.matched += 1
        fail = spec.error_status is not None and int(self.matched * spec.error_ratio) > before
        self.injected_errors += fail
        return fail

    def describe(self, now_s: float) -> dict[str, Any]:
        spec = self.spec if self.spec is not None and now_s < self.until_s else None
        return {"fault": asdict(spec) if spec else None,
                "remaining_s": round(max(0.0, self.until_s - now_s), 3) if spec else 0.0,
                "matched": self.matched, "injected_errors": self.injected_errors}


def fault_middleware(state: FaultState) -> Any:
    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if state.spec is None:
            return await handler(request)
        spec = state.current(request.path, asyncio.get_running_loop().time())
        if spec is None:
            return await handler(request)
        if spec.delay_s:
            await asyncio.sleep(spec.delay_s)
        if state.take_error(spec):
            add_log_fields(request, fault="error")
            assert spec.error_status is not None
            return web.json_response({"error": "injected fault"}, status=spec.error_status,
                                     headers={"Retry-After": "1"})
        add_log_fields(request, fault="delay")
        return await handler(request)

    return faults


def add_fault_routes(app: web.Application, state: FaultState, allowed: Callable[[web.Request], bool]) -> None:
    """`POST` (set), `GET` (inspect) and `DELETE` (clear) on `/internal/faults`, for requests `allowed`
    says carry the internal credential."""
    def refused() -> web.Response:
        return json_error(403, "fault injection needs the internal credential")

    def now_s() -> float:
        return asyncio.get_running_loop().time()

    async def set_fault(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused()
        try:  # BadRequest (too large, not JSON) is a ValueError too
            spec = fault_from_json(await read_json_body(request, max_bytes=MAX_BODY_BYTES))
        except (ValueError, TypeError) as exc:
            return json_error(400, str(exc))
        state.set(spec, now_s())
        return web.json_response(state.describe(now_s()))

    async def get_fault(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused()
        return web.json_response(state.describe(now_s()))

    async def clear_fault(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused()
        state.clear()
        return web.json_response(state.describe(now_s()))

    app.router.add_post(FAULTS_PATH, set_fault)
    app.router.add_get(FAULTS_PATH, get_fault)
    app.router.add_delete(FAULTS_PATH, clear_fault)
