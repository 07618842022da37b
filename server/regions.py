"""Regions and steering: where the edges and the clients are, and how the playback API ranks edges for
one client ("an ISP-embedded server with the title, else a nearby edge with the title, else the origin").

A regions file (JSON, docs/STEERING.md) names the client regions, the edges (each in a region, with a
capacity in active requests, an RTT to each client region and, for an ISP-embedded edge, its ISP) and
the client networks (CIDR -> region and ISP). `rank_for_client` is the ranking rule; `place_client`
decides where a request comes from, believing only what the stack's own gateway vouches for.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

REGION_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_EDGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# Set by the gateway, only from a trusted proxy in front of it (a GeoDNS/anycast front door); believed by
# the playback API only on requests that carry the stack's internal credential (server/gateway.py).
REGION_HEADER = "X-Abrkit-Client-Region"
DEFAULT_NEARBY_RTT_MS = 50.0
MAX_RTT_MS = 10_000.0


@dataclass(frozen=True, kw_only=True, slots=True)
class EdgeSite:
    """Where one edge stands: its region, its capacity (active requests it serves well), the RTT (ms)
    from each client region, and the ISP it is embedded in (None: a regional edge open to all)."""

    edge_id: str
    region: str
    capacity: int
    rtt_ms: Mapping[str, float]
    isp: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientNetwork:
    """Clients whose address is in `network` are in `region` (and behind `isp`, if given)."""

    network: str
    region: str
    isp: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RegionsConfig:
    """The stack's geography; validated by `regions_from_json`, which names the field at fault."""

    regions: tuple[str, ...]
    edges: tuple[EdgeSite, ...]
    networks: tuple[ClientNetwork, ...] = ()
    default_region: str
    nearby_rtt_ms: float = DEFAULT_NEARBY_RTT_MS  # an edge this close to a client region counts as nearby
    _sites: dict[str, EdgeSite] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sites", {site.edge_id: site for site in self.edges})

    def site(self, edge_id: str) -> EdgeSite | None:
        return self._sites.get(edge_id)

    def edges_in(self, region: str) -> list[EdgeSite]:
        return [site for site in self.edges if site.region == region]

    def network_of(self, address: str) -> ClientNetwork | None:
        """The most specific configured network holding `address` (None: none does, or not an address)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        best: tuple[int, ClientNetwork] | None = None
        for net in self.networks:
            parsed = ipaddress.ip_network(net.network, strict=False)
            if ip in parsed and (best is None or parsed.prefixlen > best[0]):
                best = (parsed.prefixlen, net)
        return None if best is None else best[1]


# --- the regions file ------------------------------------------------------------------------------

class RegionsError(ValueError):
    """A regions file that cannot be used; the message names the field."""


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise RegionsError(f"{where}: {what}")


def _name(value: object, where: str) -> str:
    _need(isinstance(value, str) and bool(REGION_RE.match(value)), where,
          f"must be a name of lower-case letters, digits and '-' (at most 32), got {value!r}")
    return str(value)


def _number(value: object, where: str, *, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    _need(ok and low <= value <= high, where, f"must be a number in {low:g}..{high:g}, got {value!r}")  # type: ignore[operator]
    return float(value)  # type: ignore[arg-type]


def _object(value: object, where: str, known: Iterable[str]) -> dict[str, Any]:
    _need(isinstance(value, dict), where, "must be a JSON object")
    unknown = sorted(set(value) - set(known))  # type: ignore[arg-type]
    _need(not unknown, where, f"unknown field(s) {unknown}")
    return value  # type: ignore[return-value]


def regions_from_json(data: object, *, source: str = "regions") -> RegionsConfig:
    """A `RegionsConfig` from the regions file's object; `RegionsError` naming the field at fault."""
    top = _object(data, source, ("regions", "edges", "networks", "default_region", "nearby_rtt_ms"))
    raw_regions = top.get("regions")
    _need(isinstance(raw_regions, list) and bool(raw_regions), f"{source}.regions", "must be a non-empty list of names")
    regions = tuple(_name(r, f"{source}.regions[{i}]") for i, r in enumerate(raw_regions))  # type: ignore[arg-type]
    _need(len(set(regions)) == len(regions), f"{source}.regions", "names must be unique")
    default = _name(top.get("default_region", regions[0]), f"{source}.default_region")
    _need(default in regions, f"{source}.default_region", f"{default!r} is not one of the regions {list(regions)}")
    nearby = _number(top.get("nearby_rtt_ms", DEFAULT_NEARBY_RTT_MS), f"{source}.nearby_rtt_ms", low=0, high=MAX_RTT_MS)
    raw_edges = top.get("edges")
    _need(isinstance(raw_edges, list) and bool(raw_edges), f"{source}.edges", "must be a non-empty list of edges")
    edges = tuple(_edge(e, f"{source}.edges[{i}]", regions) for i, e in enumerate(raw_edges))  # type: ignore[arg-type]
    ids = [e.edge_id for e in edges]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    _need(not dupes, f"{source}.edges", f"edge ids must be unique, repeated: {dupes}")
    raw_networks = top.get("networks", [])
    _need(isinstance(raw_networks, list), f"{source}.networks", "must be a list")
    networks = tuple(_network(n, f"{source}.networks[{i}]", regions) for i, n in enumerate(raw_networks))
    return RegionsConfig(regions=regions, edges=edges, networks=networks, default_region=default, nearby_rtt_ms=nearby)


def _edge(raw: object, where: str, regions: tuple[str, ...]) -> EdgeSite:
    obj = _object(raw, where, ("id", "region", "capacity", "rtt_ms", "isp"))
    edge_id = obj.get("id")
    _need(isinstance(edge_id, str) and bool(_EDGE_ID_RE.match(edge_id)), f"{where}.id",
          f"must be 1-64 characters of [A-Za-z0-9._:-], got {edge_id!r}")
    region = _name(obj.get("region"), f"{where}.region")
    _need(region in regions, f"{where}.region", f"{region!r} is not one of the regions {list(regions)}")
    capacity = obj.get("capacity", 100)
    _need(isinstance(capacity, int) and not isinstance(capacity, bool) and 1 <= capacity <= 1_000_000,
          f"{where}.capacity", f"must be a whole number of active requests in 1..1000000, got {capacity!r}")
    isp = obj.get("isp")
    if isp is not None:
        isp = _name(isp, f"{where}.isp")
    rtt = obj.get("rtt_ms")
    _need(isinstance(rtt, dict), f"{where}.rtt_ms", "must be an object {client region: milliseconds}")
    for client_region in rtt:  # type: ignore[union-attr]
        _need(client_region in regions, f"{where}.rtt_ms.{client_region}", "is not one of the regions")
    # A regional edge may serve anyone; an ISP's embedded edge serves that ISP's clients, in its own region.
    wanted = (region,) if isp is not None else regions
    for client_region in wanted:
        _need(client_region in rtt, f"{where}.rtt_ms.{client_region}", "is missing (an RTT to every client region "  # type: ignore[operator]
              "it may serve is required)")
    rtt_ms = {r: _number(v, f"{where}.rtt_ms.{r}", low=0, high=MAX_RTT_MS) for r, v in rtt.items()}  # type: ignore[union-attr]
    return EdgeSite(edge_id=str(edge_id), region=region, capacity=int(capacity), rtt_ms=rtt_ms, isp=isp)


def _network(raw: object, where: str, regions: tuple[str, ...]) -> ClientNetwork:
    obj = _object(raw, where, ("network", "region", "isp"))
    network = obj.get("network")
    try:
        ipaddress.ip_network(str(network), strict=False)
        ok = isinstance(network, str)
    except ValueError:
        ok = False
    _need(ok, f"{where}.network", f"must be an IP address or CIDR network, got {network!r}")
    region = _name(obj.get("region"), f"{where}.region")
    _need(region in regions, f"{where}.region", f"{region!r} is not one of the regions {list(regions)}")
    isp = obj.get("isp")
    return ClientNetwork(network=str(network), region=region, isp=None if isp is None else _name(isp, f"{where}.isp"))


def load_regions(path: Path) -> RegionsConfig:
    """The regions file at `path`; `RegionsError` (a `ValueError`) naming the file and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegionsError(f"{path}: cannot read the regions file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise RegionsError(f"{path}: not valid JSON ({exc})") from None
    return regions_from_json(data, source=str(path))


# --- where a client is -----------------------------------------------------------------------------

PlacementSource = Literal["proxy", "network", "hint", "default"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Placement:
    """Where a client is: its region, its ISP (known from a network or a trusted proxy only), and why."""

    region: str
    isp: str | None = None
    source: PlacementSource = "default"


def parse_region_claim(value: str, regions: RegionsConfig) -> Placement | None:
    """`region` or `region/isp` (what a trusted front door says) as a placement; None if unknown."""
    region, _, isp = value.strip().partition("/")
    if region not in regions.regions or (isp and not REGION_RE.match(isp)):
        return None
    return Placement(region=region, isp=isp or None, source="proxy")


def place_client(regions: RegionsConfig, *, proxy_claim: str | None, address: str | None,
                 hint: str | None) -> Placement:
    """Where a client is, most trusted first: what a trusted front door said (`proxy_claim`), the
    configured network holding its `address`, the region it says it is in (`hint`: a region only,
    never an ISP, since an ISP's edges are for that ISP's network), else the default region.
    `ValueError` for a hint naming no configured region (an unknown claim is refused, not guessed)."""
    if proxy_claim:
        placed = parse_region_claim(proxy_claim, regions)
        if placed is not None:
            return placed
    if address:
        net = regions.network_of(address)
        if net is not None:
            return Placement(region=net.region, isp=net.isp, source="network")
    if hint is not None:
        if hint not in regions.regions:
            raise ValueError(f"unknown region {hint[:40]!r}; this service has {', '.join(regions.regions)}")
        return Placement(region=hint, source="hint")
    return Placement(region=regions.default_region, source="default")


# --- the ranking rule ------------------------------------------------------------------------------

class EdgeView(Protocol):
    """What the ranking reads of an edge's last heartbeat."""

    @property
    def edge_id(self) -> str: ...
    @property
    def load(self) -> float: ...
    @property
    def cached_titles(self) -> frozenset[str]: ...


TIERS = ("isp+title", "nearby+title", "isp", "nearby", "far+title", "far", "unplaced")


@dataclass(frozen=True, kw_only=True, slots=True)
class Ranked:
    """One edge in a client's ranking: its tier (an index into `TIERS`), RTT from the client's region
    (None for an edge the regions file does not name) and whether it is at or over capacity."""

    edge_id: str
    region: str | None
    tier: int
    rtt_ms: float | None
    utilisation: float  # load / capacity
    overloaded: bool

    @property
    def reason(self) -> str:
        return TIERS[self.tier] + (", over capacity" if self.overloaded else "")


def rank_for_client(title: str, edges: Iterable[EdgeView], client: Placement, regions: RegionsConfig, *,
                    affinity: Mapping[str, int], affinity_weight: float, load_weight: float) -> list[Ranked]:
    """The live `edges` for `client`, best first (docs/STEERING.md has a worked example).

    Sort key, compared left to right:
    1. at or over capacity (load >= capacity) goes behind every edge with room;
    2. the tier: the client's ISP-embedded edge with the title, a nearby edge (RTT from the client's
       region <= `nearby_rtt_ms`) with it, the ISP edge without it, a nearby edge without it (it fills
       from the origin: the origin's place in the rule), then far edges with and without the title,
       then edges the regions file does not name;
    3. the RTT from the client's region (locality within a tier);
    4. `affinity_weight * affinity rank + load_weight * utilisation in percent` (rendezvous affinity
       keeps a title's requests on few caches; load spreads them);
    5. the edge id (determinism).
    Another ISP's embedded edges are left out: they serve their own network only.
    """
    ranked: list[tuple[tuple[Any, ...], Ranked]] = []
    for edge in edges:
        site = regions.site(edge.edge_id)
        if site is None:
            entry = Ranked(edge_id=edge.edge_id, region=None, tier=TIERS.index("unplaced"), rtt_ms=None,
                           utilisation=0.0, overloaded=False)
            rtt_key = math.inf
        else:
            if site.isp is not None and site.isp != client.isp:
                continue
            rtt = site.rtt_ms.get(client.region)
            if rtt is None:  # an ISP edge of the client's ISP in another region: not for this client
                continue
            has = title in edge.cached_titles
            if site.isp is not None:
                tier = 0 if has else 2
            elif rtt <= regions.nearby_rtt_ms:
                tier = 1 if has else 3
            else:
                tier = 4 if has else 5
            utilisation = edge.load / site.capacity
            entry = Ranked(edge_id=edge.edge_id, region=site.region, tier=tier, rtt_ms=rtt,
                           utilisation=round(utilisation, 4), overloaded=edge.load >= site.capacity)
            rtt_key = rtt
        cost = affinity_weight * affinity.get(edge.edge_id, 0) + load_weight * 100.0 * entry.utilisation
        ranked.append(((entry.overloaded, entry.tier, rtt_key, cost, edge.edge_id), entry))
    return [entry for _, entry in sorted(ranked, key=lambda item: item[0])]
