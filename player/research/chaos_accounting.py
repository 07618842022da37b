"""A chaos run's accounting of failed requests: every failed attempt is either in a service's access
log under its request ID (a server answered) or accounted for client-side (no complete response);
the services' logs are also scanned for lines that mean a bug rather than a handled failure."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from player.client.fetch import host_of

# Lines in a service log that mean a bug, not a handled failure.
_LOG_PROBLEM = re.compile(r"Traceback \(most recent call last\)|unhandled error|Task exception was never retrieved"
                          r"|Error handling request|\bCRITICAL\b")


def read_service_logs(log_dir: Path) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """(request ID -> access-log entries, problem lines) from every `<service>.log` in `log_dir`."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if _LOG_PROBLEM.search(line):
                problems.append(f"{path.name}: {line.strip()[:300]}")
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("request_id"), str):
                    by_id.setdefault(entry["request_id"], []).append(entry)
    return by_id, problems


def account_failures(attempts: Sequence[dict[str, Any]], by_id: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every failed attempt is either in a service's access log under its request ID (a server
    answered), or accounted for client-side (no complete response: refused, reset, timed out)."""
    matched = client_side = 0
    unaccounted: list[dict[str, Any]] = []
    by_kind: dict[str, int] = {}
    hosts: set[str] = set()
    for attempt in attempts:
        rid, status = attempt.get("request_id"), attempt.get("status")
        if rid and rid in by_id and (status is None or any(e.get("status") == status for e in by_id[rid])):
            matched += 1
            kind = f"HTTP {status}"
        elif attempt.get("error") and not str(attempt["error"]).startswith("HTTP "):
            # No answer, or one cut short (refused, reset, timed out, a process killed mid-body):
            # a server that never finished a response never logged it.
            client_side += 1
            kind = str(attempt["error"]).split(":")[0]
            hosts.add(host_of(str(attempt.get("url", ""))))
        else:
            unaccounted.append({k: attempt.get(k) for k in ("url", "status", "error", "request_id")})
            continue
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return {"failed": len(attempts), "matched_in_logs": matched, "client_side": client_side,
            "unaccounted": unaccounted, "by_kind": by_kind, "client_side_hosts": sorted(hosts)}
