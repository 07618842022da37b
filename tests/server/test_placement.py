"""The demand model, the placement planner, plans as files, and pushing a plan to real edges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from server.edge import RunningEdge
from server.placement import (
    DemandModel,
    EdgeSpec,
    PlacementPlan,
    Region,
    Release,
    apply_plan,
    catalogue_from_root,
    default_model,
    load_model,
    load_plan,
    model_from_json,
    plan_placement,
    preposition_path,
    rendezvous_weight,
    synthetic_catalogue,
)
from tests.conftest import PackagedTitles
from tests.server.edgekit import INTERNAL_HEADERS, TITLE, EdgeFactory, title_paths

GB = 10**9


def model(**overrides: object) -> DemandModel:
    regions = (Region(name="a", share=0.75, edges=(EdgeSpec(id="a-1", cache_bytes=20 * GB, budget_bytes=5 * GB),
                                                   EdgeSpec(id="a-2", cache_bytes=20 * GB, budget_bytes=5 * GB))),
               Region(name="b", share=0.25, peak_hour_utc=8.0,
                      edges=(EdgeSpec(id="b-1", cache_bytes=20 * GB, budget_bytes=2 * GB),)))
    settings: dict[str, object] = {"catalogue": synthetic_catalogue(200, seed=4), "regions": regions,
                                   "releases": (Release(title="t00150", at_s=6 * 3600.0, peak_share=0.5),),
                                   "sessions_per_s": 0.5, "diurnal_amplitude": 0.5}
    settings.update(overrides)
    return DemandModel(**settings)  # type: ignore[arg-type]


# --- the demand model -------------------------------------------------------------------------------

def test_popularity_is_zipf_tilted_per_region_and_a_release_opens_with_a_spike() -> None:
    m = model(regional_tilt=0.0)
    before, after, later = m.weights(0, np.array([3600.0, 6 * 3600.0, 12 * 3600.0]))
    assert before.sum() == pytest.approx(1.0) and after.sum() == pytest.approx(1.0)
    assert before[150] == 0.0 and after[150] > 0.3 > later[150] > 0.0
    ratio = before[0] / before[9]
    assert ratio == pytest.approx(10 ** 0.9, rel=1e-6)  # Zipf s = 0.9 without the tilt
    tilted = model()
    assert not np.allclose(tilted.weights(0, np.array([0.0])), tilted.weights(1, np.array([0.0])))


def test_sessions_follow_the_region_shares_and_the_daily_curve() -> None:
    m = model()
    peak, trough = m.session_rate(0, np.array([20 * 3600.0, 8 * 3600.0]))
    assert peak / trough == pytest.approx(1.5 / 0.5)
    day = [m.expected_sessions(r, 0.0, 86_400.0).sum() for r in range(2)]
    assert sum(day) == pytest.approx(0.5 * 86_400.0, rel=1e-3)
    assert day[0] / day[1] == pytest.approx(3.0, rel=1e-3)


def test_rendition_shares_spread_over_any_ladder_and_audio_is_always_fetched() -> None:
    m = model()
    six = m.rendition_shares(m.catalogue[0])
    assert six["v5"] == pytest.approx(0.22) and six["a0"] == 1.0
    three = m.rendition_shares(synthetic_catalogue(1, ladder_bps=(300_000, 900_000, 3_000_000))[0])
    assert sum(v for k, v in three.items() if k.startswith("v")) == pytest.approx(1.0)
    assert three["v0"] < three["v1"]
    assert m.survival(m.catalogue[0])[0] == 1.0 and np.all(np.diff(m.survival(m.catalogue[0])) < 0)


@pytest.mark.parametrize(("change", "message"), [
    ({"regions": ()}, "titles and regions"),
    ({"releases": (Release(title="nope", at_s=0.0),)}, "not in the catalogue"),
    ({"diurnal_amplitude": 1.5}, "diurnal_amplitude"),
    ({"video_shares": (0.0, 0.0)}, "video_shares"),
])
def test_a_bad_model_says_what_is_wrong(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model(**change)


# --- the planner ----------------------------------------------------------------------------------

def test_a_plan_stays_within_budgets_on_the_home_edges_and_pushes_releases_ahead() -> None:
    m = model()
    plan = plan_placement(m, plan_at_s=3600.0, horizon_s=23 * 3600.0, release_lead_s=1800.0)
    assert plan.items
    for edge in m.edges:
        assert 0 < plan.used[edge.id] <= edge.budget_bytes
        assert sum(i.size_bytes for i in plan.items if i.edge == edge.id) == plan.used[edge.id]
    for item in plan.items:
        region = next(r for r in m.regions if any(e.id == item.edge for e in r.edges))
        home = max(region.edges, key=lambda e: (rendezvous_weight(item.title, e.id), e.id))
        assert item.edge == home.id
        title = next(t for t in m.catalogue if t.name == item.title)
        assert item.segments == title.segment_count or item.segments % 75 == 0  # whole chunks from the start
    release = [i for i in plan.items if i.title == "t00150"]
    assert release and all(i.push_at_s == 6 * 3600.0 - 1800.0 for i in release)
    assert all(i.push_at_s == 3600.0 for i in plan.items if i.title != "t00150")
    # the most popular title in region a goes to its home edge there first
    first = max(range(200), key=lambda t: m.expected_sessions(0, 3600.0, 86_400.0)[t])
    assert any(i.title == m.catalogue[first].name for i in plan.items)


def test_more_budget_places_more_and_a_threshold_places_less() -> None:
    small = plan_placement(model(), horizon_s=86_400.0)
    big_regions = tuple(Region(name=r.name, share=r.share, peak_hour_utc=r.peak_hour_utc,
                               edges=tuple(EdgeSpec(id=e.id, cache_bytes=e.cache_bytes, budget_bytes=e.cache_bytes)
                                           for e in r.edges)) for r in model().regions)
    big = plan_placement(model(regions=big_regions), horizon_s=86_400.0)
    picky = plan_placement(model(regions=big_regions), horizon_s=86_400.0, min_expected_requests=2000.0)
    assert sum(big.used.values()) > sum(small.used.values())
    assert sum(picky.used.values()) < sum(big.used.values())


def test_a_forecast_error_changes_the_plan_deterministically() -> None:
    exact = plan_placement(model(), horizon_s=86_400.0)
    noisy = plan_placement(model(), horizon_s=86_400.0, forecast_sigma=1.0, forecast_seed=3)
    again = plan_placement(model(), horizon_s=86_400.0, forecast_sigma=1.0, forecast_seed=3)
    assert noisy == again and noisy.items != exact.items


def test_a_plan_survives_its_file_and_a_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    plan = plan_placement(model(), horizon_s=86_400.0)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.as_json()))
    assert load_plan(path) == plan
    path.write_text(json.dumps({"items": [{"edge": "a-1"}]}))
    with pytest.raises(ValueError, match="not a placement plan"):
        load_plan(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_plan(path)


# --- model files ----------------------------------------------------------------------------------

def test_a_model_file_with_packaged_titles(tmp_path: Path, packaged: PackagedTitles) -> None:
    data = {"catalogue": {"content_root": str(packaged.content_root), "order": ["clipenc", "clip"]},
            "regions": [{"name": "eu", "share": 1, "edges": [{"id": "edge-0", "url": "http://127.0.0.1:9",
                                                              "cache_gb": 1, "budget_gb": 0.5}]}],
            "releases": [{"title": "clip", "at_s": 3600}], "zipf_s": 1.0, "sessions_per_s": 2}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    m = load_model(path)
    assert [t.name for t in m.catalogue] == ["clipenc", "clip"]
    clip = m.catalogue[1]
    assert {r.id for r in clip.video} == {"v216p", "v360p", "v540p"} and clip.audio
    assert clip.video[0].segment_bytes.sum() > 0 and clip.manifest_bytes > 0
    assert m.edges[0].budget_bytes == GB // 2 and m.edges[0].url == "http://127.0.0.1:9"
    assert catalogue_from_root(packaged.content_root)[0].name == "clip"


@pytest.mark.parametrize(("data", "message"), [
    ({"regions": []}, "missing 'catalogue'"),
    ({"catalogue": {"synthetic_titles": 5}}, "missing 'regions'"),
    ({"catalogue": {"synthetic_titles": "5"}, "regions": []}, "'synthetic_titles' has the wrong type"),
    ({"catalogue": {"synthetic_titles": 5}, "regions": [{"name": "x", "share": 1, "edges": [{"id": "e"}]}]},
     r"regions\[0\].edges\[0\]: missing 'cache_gb'"),
    ({"catalogue": {"synthetic_titles": 5}, "regions": [{"name": "x", "share": 1, "edges": [
        {"id": "e", "cache_gb": 1, "budget_gb": 2}]}]}, "budget_bytes <= cache_bytes"),
])
def test_a_bad_model_file_names_the_field(data: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        model_from_json(data, base_dir=tmp_path)


def test_the_default_model_is_a_day_of_three_regions() -> None:
    m = default_model(titles=50)
    assert [r.name for r in m.regions] == ["eu", "na", "apac"] and len(m.edges) == 6
    assert len(m.releases) == 2


# --- pushing a plan -----------------------------------------------------------------------------------

async def test_a_plan_is_pushed_through_the_edges_preposition_endpoint(make_edge: EdgeFactory) -> None:
    edge: RunningEdge = await make_edge()
    plan = PlacementPlan.from_json({"plan_at_s": 0, "horizon_s": 1, "budgets": {}, "used": {}, "items": [
        {"edge": "edge-test", "title": TITLE, "renditions": ["a0", "v0"], "segments": 1, "size_bytes": 1,
         "expected_requests": 3, "push_at_s": 0},
        {"edge": "elsewhere", "title": TITLE, "renditions": ["v1"], "segments": 1, "size_bytes": 1,
         "expected_requests": 3, "push_at_s": 0}]})
    assert preposition_path(plan.items[0]) == f"/internal/preposition/{TITLE}?renditions=a0,v0&segments=1"
    results = await apply_plan(plan, {"edge-test": edge.url},
                               headers=INTERNAL_HEADERS)
    assert results[0]["status"] == 200 and results[0]["fetched"] == 5 and results[0]["failed"] == 0
    assert results[1] == {"edge": "elsewhere", "title": TITLE, "renditions": ["v1"], "segments": 1, "status": None,
                          "error": "no URL for this edge"}
    expected = {f"/{TITLE}/manifest.mpd", f"/{TITLE}/segments.json", f"/{TITLE}/audio/a0/init.mp4",
                f"/{TITLE}/audio/a0/1.m4s", f"/{TITLE}/video/v0/init.mp4", f"/{TITLE}/video/v0/1.m4s"}
    assert set(edge.edge.cache.keys()) == expected
    assert len(title_paths()) > len(expected)


# --- the command ----------------------------------------------------------------------------------

def test_placement_plan_apply_and_simulate_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from player.cli import main

    monkeypatch.setenv("ABRKIT_INTERNAL_TOKEN", "ab" * 32)

    model_file = tmp_path / "model.json"
    model_file.write_text(json.dumps({
        "catalogue": {"synthetic_titles": 40}, "sessions_per_s": 0.2, "mean_watch_s": 600,
        "regions": [{"name": "eu", "share": 1, "edges": [{"id": "edge-0", "url": "http://127.0.0.1:9", "cache_gb": 4,
                                                          "budget_gb": 2}]}],
        "releases": [{"title": "t00030", "at_s": 36000}]}))
    plan_file = tmp_path / "plan.json"
    assert main(["placement", "plan", "--model", str(model_file), "--out", str(plan_file)]) == 0
    assert "edge-0:" in capsys.readouterr().out and load_plan(plan_file).items
    # nothing listens on port 9: every push fails, and says so
    assert main(["placement", "apply", str(plan_file), "--title", "t00030"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "0 of" in out and "t00000" not in out
    assert main(["placement", "simulate", "--model", str(model_file), "--requests", "30000", "--duration-h", "24",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    lru, placed = result["lru"], result["lru_with_placement"]
    assert lru["requests"] > 0 and placed["hits"] >= lru["hits"] and placed["fill_bytes"] > 0


@pytest.mark.parametrize(("argv", "message"), [
    (["placement", "simulate", "--model", "/nonexistent.json"], "cannot read /nonexistent.json"),
    (["placement", "simulate", "--requests", "0"], "--requests must be >= 1"),
    (["placement", "apply", "/nonexistent-plan.json"], "cannot read /nonexistent-plan.json"),
    (["placement", "apply", "{plan}", "--edge", "edge-0"], "--edge expects ID=URL"),
    (["placement", "apply", "{plan}"], "give the stack's internal credential"),
])
def test_placement_command_errors_are_one_line(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from player.cli import main

    monkeypatch.delenv("ABRKIT_INTERNAL_TOKEN", raising=False)

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PlacementPlan(items=(), plan_at_s=0, horizon_s=1, budgets={}, used={}).as_json()))
    assert main([a.replace("{plan}", str(plan_file)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
