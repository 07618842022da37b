"""Regions: the regions file (errors name the field), where a client is placed, and the ranking rule."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.regions import (
    Placement,
    RegionsError,
    load_regions,
    parse_region_claim,
    place_client,
    rank_for_client,
    regions_from_json,
)

GEOGRAPHY: dict[str, Any] = {
    "regions": ["eu", "us"],
    "default_region": "eu",
    "nearby_rtt_ms": 30,
    "edges": [
        {"id": "eu-1", "region": "eu", "capacity": 10, "rtt_ms": {"eu": 10, "us": 90}},
        {"id": "eu-2", "region": "eu", "capacity": 10, "rtt_ms": {"eu": 12, "us": 95}},
        {"id": "us-1", "region": "us", "capacity": 10, "rtt_ms": {"eu": 90, "us": 8}},
        {"id": "telco-1", "region": "eu", "isp": "telco", "capacity": 4, "rtt_ms": {"eu": 3}},
        {"id": "other-1", "region": "eu", "isp": "cable", "capacity": 4, "rtt_ms": {"eu": 2}},
    ],
    "networks": [{"network": "10.1.0.0/16", "region": "eu", "isp": "telco"},
                 {"network": "10.0.0.0/8", "region": "us"}],
}


@dataclass(frozen=True)
class Beat:
    edge_id: str
    load: float = 0.0
    cached_titles: frozenset[str] = frozenset()


def beats(**spec: tuple[float, bool]) -> list[Beat]:
    """edge id (with '_' for '-') -> (load, holds 'film')."""
    return [Beat(k.replace("_", "-"), load, frozenset({"film"} if has else ())) for k, (load, has) in spec.items()]


EU = Placement(region="eu", source="hint")
US = Placement(region="us", source="hint")
TELCO = Placement(region="eu", isp="telco", source="network")


@pytest.mark.parametrize(("client", "edges", "expected"), [
    # The ISP's embedded edge with the title first, then nearby edges with it, then without it (filled
    # from the origin), far edges last; another ISP's embedded edge never.
    (TELCO, beats(eu_1=(0, True), eu_2=(0, False), us_1=(0, True), telco_1=(0, True), other_1=(0, True)),
     ["telco-1", "eu-1", "eu-2", "us-1"]),
    # The embedded edge without the title goes behind a nearby edge that holds it.
    (TELCO, beats(eu_1=(0, True), eu_2=(0, False), telco_1=(0, False)), ["eu-1", "telco-1", "eu-2"]),
    # Locality: a client outside the ISP never sees its edges; among nearby edges the closer first.
    (EU, beats(eu_1=(0, True), eu_2=(0, True), us_1=(0, True), telco_1=(0, True)), ["eu-1", "eu-2", "us-1"]),
    (US, beats(eu_1=(0, True), eu_2=(0, True), us_1=(0, True)), ["us-1", "eu-1", "eu-2"]),
    # The title beats RTT within the nearby band: eu-2 holds it, eu-1 does not.
    (EU, beats(eu_1=(0, False), eu_2=(0, True), us_1=(0, True)), ["eu-2", "eu-1", "us-1"]),
    # A far edge with the title stays behind a nearby one without it (that one fills from the origin).
    (US, beats(eu_1=(0, True), us_1=(0, False)), ["us-1", "eu-1"]),
    # Load vs capacity: an edge at capacity goes behind every edge with room, even a far one.
    (EU, beats(eu_1=(10, True), eu_2=(3, True), us_1=(0, True)), ["eu-2", "us-1", "eu-1"]),
    (EU, beats(eu_1=(10, True), eu_2=(12, True), us_1=(10, True)), ["eu-1", "eu-2", "us-1"]),
    # Health: only live edges are ranked (a dead region leaves the far one).
    (EU, beats(us_1=(0, False)), ["us-1"]),
    # An edge the regions file does not name is ranked last.
    (US, [Beat("stray"), *beats(eu_1=(0, False))], ["eu-1", "stray"]),
])
def test_ranking_rule(client: Placement, edges: list[Beat], expected: list[str]) -> None:
    regions = regions_from_json(GEOGRAPHY)
    ranked = rank_for_client("film", edges, client, regions, affinity={}, affinity_weight=1.0, load_weight=0.1)
    assert [r.edge_id for r in ranked] == expected


def test_same_rtt_edges_are_ordered_by_affinity_and_load() -> None:
    data = copy.deepcopy(GEOGRAPHY)
    data["edges"][1]["rtt_ms"]["eu"] = 10  # eu-1 and eu-2 equally close
    regions = regions_from_json(data)
    edges = beats(eu_1=(0, True), eu_2=(0, True))

    def order(affinity: dict[str, int], load_1: float = 0.0) -> list[str]:
        edges[0] = Beat("eu-1", load_1, frozenset({"film"}))
        return [r.edge_id for r in rank_for_client("film", edges, EU, regions, affinity=affinity,
                                                    affinity_weight=1.0, load_weight=0.1)]

    assert order({"eu-1": 1, "eu-2": 0}) == ["eu-2", "eu-1"]  # the title's rendezvous home first
    assert order({"eu-1": 0, "eu-2": 1}) == ["eu-1", "eu-2"]
    assert order({"eu-1": 0, "eu-2": 1}, load_1=2) == ["eu-2", "eu-1"]  # 20 % busier outweighs one rank


# docs/STEERING.md: the regions file shown there, plus a cable ISP's embedded edge.
DOC_EXAMPLE: dict[str, Any] = {
    "regions": ["eu", "us"], "default_region": "eu", "nearby_rtt_ms": 50,
    "edges": [
        {"id": "eu-1", "region": "eu", "capacity": 64, "rtt_ms": {"eu": 10, "us": 70}},
        {"id": "eu-2", "region": "eu", "capacity": 64, "rtt_ms": {"eu": 15, "us": 75}},
        {"id": "us-1", "region": "us", "capacity": 64, "rtt_ms": {"eu": 70, "us": 10}},
        {"id": "telco-1", "region": "eu", "capacity": 16, "rtt_ms": {"eu": 3}, "isp": "telco"},
        {"id": "cable-1", "region": "eu", "capacity": 16, "rtt_ms": {"eu": 2}, "isp": "cable"},
    ],
    "networks": [{"network": "10.1.0.0/16", "region": "eu", "isp": "telco"}, {"network": "10.0.0.0/8", "region": "us"}],
}


@pytest.mark.parametrize(("region_hint", "telco_load", "expected"), [
    (None, 1, ["telco-1", "eu-2", "eu-1", "us-1"]),
    (None, 16, ["eu-2", "eu-1", "us-1", "telco-1"]),  # the embedded edge is full: behind every edge with room
    ("us", 1, ["us-1", "eu-2", "eu-1"]),  # both eu edges are far: the one holding the title first
])
def test_the_worked_example_of_docs_steering(region_hint: str | None, telco_load: int, expected: list[str]) -> None:
    regions = regions_from_json(DOC_EXAMPLE)
    client = (place_client(regions, proxy_claim=None, address="10.1.2.3", hint=None) if region_hint is None
              else place_client(regions, proxy_claim=None, address="192.0.2.7", hint=region_hint))
    edges = beats(telco_1=(telco_load, True), eu_1=(2, False), eu_2=(5, True), us_1=(0, True), cable_1=(0, True))
    ranked = rank_for_client("film", edges, client, regions, affinity={}, affinity_weight=1.0, load_weight=0.1)
    assert [r.edge_id for r in ranked] == expected


def test_reasons_say_why() -> None:
    regions = regions_from_json(GEOGRAPHY)
    ranked = rank_for_client("film", beats(telco_1=(4, True), eu_1=(0, False), us_1=(0, True)), TELCO, regions,
                             affinity={}, affinity_weight=1.0, load_weight=0.1)
    assert [(r.edge_id, r.reason, r.rtt_ms) for r in ranked] == [
        ("eu-1", "nearby", 10.0), ("us-1", "far+title", 90.0), ("telco-1", "isp+title, over capacity", 3.0)]


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"proxy_claim": "us", "address": "10.1.2.3", "hint": "eu"}, Placement(region="us", source="proxy")),
    ({"proxy_claim": "eu/telco", "address": None, "hint": None}, Placement(region="eu", isp="telco", source="proxy")),
    ({"proxy_claim": "mars", "address": "10.1.2.3", "hint": None},  # an unknown claim falls through
     Placement(region="eu", isp="telco", source="network")),
    ({"proxy_claim": None, "address": "10.9.9.9", "hint": "eu"}, Placement(region="us", source="network")),
    ({"proxy_claim": None, "address": "192.0.2.1", "hint": "us"}, Placement(region="us", source="hint")),
    ({"proxy_claim": None, "address": "not an address", "hint": None}, Placement(region="eu", source="default")),
])
def test_placement_believes_the_front_door_then_the_network_then_the_client(kwargs: dict[str, Any],
                                                                         expected: Placement) -> None:
    assert place_client(regions_from_json(GEOGRAPHY), **kwargs) == expected


def test_an_unknown_region_hint_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown region 'mars'; this service has eu, us"):
        place_client(regions_from_json(GEOGRAPHY), proxy_claim=None, address=None, hint="mars")
    assert parse_region_claim("eu/Not An Isp", regions_from_json(GEOGRAPHY)) is None


def _broken(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(GEOGRAPHY)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "message"), [
    ("regions", [], r"regions\.regions: must be a non-empty list"),
    ("regions", ["eu", "eu"], r"regions\.regions: names must be unique"),
    ("regions.1", "U S", r"regions\.regions\[1\]: must be a name"),
    ("default_region", "asia", r"regions\.default_region: 'asia' is not one of the regions"),
    ("edges.0.region", "asia", r"regions\.edges\[0\]\.region: 'asia' is not one of the regions"),
    ("edges.0.capacity", 0, r"regions\.edges\[0\]\.capacity: must be a whole number"),
    ("edges.0.capacity", True, r"regions\.edges\[0\]\.capacity"),
    ("edges.1.rtt_ms.us", _DELETE, r"regions\.edges\[1\]\.rtt_ms\.us: is missing"),
    ("edges.1.rtt_ms.us", -5, r"regions\.edges\[1\]\.rtt_ms\.us: must be a number in 0\.\.10000"),
    ("edges.1.rtt_ms.us", float("nan"), r"regions\.edges\[1\]\.rtt_ms\.us: must be a number"),
    ("edges.2.rtt_ms.mars", 5, r"regions\.edges\[2\]\.rtt_ms\.mars: is not one of the regions"),
    ("edges.2.id", "../x", r"regions\.edges\[2\]\.id: must be 1-64 characters"),
    ("edges.3.id", "eu-1", r"regions\.edges: edge ids must be unique, repeated: \['eu-1'\]"),
    ("edges.0.speed", 3, r"regions\.edges\[0\]: unknown field\(s\) \['speed'\]"),
    ("networks.0.network", "10.1.0.0/33", r"regions\.networks\[0\]\.network: must be an IP address or CIDR"),
    ("networks.1.region", "mars", r"regions\.networks\[1\]\.region: 'mars' is not one of the regions"),
    ("nearby_rtt_ms", "near", r"regions\.nearby_rtt_ms: must be a number"),
    ("edges", {"eu-1": {}}, r"regions\.edges: must be a non-empty list"),
])
def test_a_malformed_regions_file_names_the_field(path: str, value: object, message: str) -> None:
    with pytest.raises(RegionsError, match=message):
        regions_from_json(_broken(path, value))


def test_load_regions_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "regions.json"
    path.write_text("{not json")
    with pytest.raises(RegionsError, match=rf"{path}: not valid JSON"):
        load_regions(path)
    with pytest.raises(RegionsError, match="cannot read the regions file"):
        load_regions(tmp_path / "missing.json")
    path.write_text(json.dumps(_broken("edges.0.rtt_ms.eu", "ten")))
    with pytest.raises(RegionsError, match=rf"{path}\.edges\[0\]\.rtt_ms\.eu: must be a number"):
        load_regions(path)
    path.write_text(json.dumps(GEOGRAPHY))
    regions = load_regions(path)
    assert [s.edge_id for s in regions.edges_in("eu")] == ["eu-1", "eu-2", "telco-1", "other-1"]


def test_abrkit_serve_names_the_field_of_a_bad_regions_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from player.cli import main

    (tmp_path / "content").mkdir()
    bad = tmp_path / "regions.json"
    bad.write_text(json.dumps(_broken("edges.0.rtt_ms.eu", "far")))
    code = main(["serve", "--content", str(tmp_path / "content"), "--config", str(tmp_path / "state" / "stack.json"),
                 "--regions", str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}.edges[0].rtt_ms.eu: must be a number" in err and "Traceback" not in err
