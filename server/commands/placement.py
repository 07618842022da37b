"""`abrkit placement plan|apply|simulate`: plan what to push to which edge before the demand comes,
push it through the edges' pre-position endpoint, and replay requests to see what it is worth."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from server.commands import CommandError

if TYPE_CHECKING:
    from server.cachesim import Comparison
    from server.placement import DemandModel, PlacementPlan

HOUR_S = 3600.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "placement", help="predictive pre-positioning: plan, push and simulate (docs/FLEET.md)",
        description="Plan which titles and renditions each edge gets before the demand comes (a Zipf "
                    "popularity, regional shares and a release calendar), push the plan through the edges' "
                    "pre-position endpoint, or replay a request log against the edges' cache to compare LRU "
                    "alone with LRU plus the plan.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    plan = actions.add_parser("plan", help="write a placement plan from a demand model")
    _model_options(plan)
    plan.add_argument("--out", type=Path, default=Path("placement-plan.json"), help="plan file (default %(default)s)")
    plan.set_defaults(func=run_plan)

    apply = actions.add_parser("apply", help="push a plan through the edges' pre-position endpoint")
    apply.add_argument("plan", type=Path, help="a plan file from `abrkit placement plan`")
    apply.add_argument("--edge", action="append", default=[], metavar="ID=URL",
                       help="an edge's URL (repeatable; default: the URLs in the plan)")
    apply.add_argument("--internal-token-file", type=Path,
                       help="the stack's internal credential (hex text or raw bytes; default $ABRKIT_INTERNAL_TOKEN "
                            "as hex): every edge's /internal/* asks for it")
    apply.add_argument("--title", action="append", help="push only this title (repeatable)")
    apply.add_argument("--json", action="store_true", help="print the results as JSON")
    apply.set_defaults(func=run_apply)

    simulate = actions.add_parser("simulate", help="replay requests: LRU alone vs LRU plus the plan")
    _model_options(simulate)
    simulate.add_argument("--requests", type=int, default=1_000_000,
                          help="size of the synthetic request log (default %(default)s)")
    simulate.add_argument("--duration-h", type=float, default=30.0, help="hours the synthetic log spans (default 30)")
    simulate.add_argument("--log", type=Path, nargs="+", metavar="ACCESS_LOG",
                          help="replay these edge JSON access logs instead of a synthetic log")
    simulate.add_argument("--plan", type=Path, help="replay this plan (default: plan from the model)")
    simulate.add_argument("--seed", type=int, default=1, help="of the synthetic log (default 1)")
    simulate.add_argument("--json", action="store_true", help="print the results as JSON")
    simulate.set_defaults(func=run_simulate)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="demand model file (default: the built-in day of three regions)")
    parser.add_argument("--plan-at-h", type=float, default=6.0, help="plan (and push) at this hour (default 6)")
    parser.add_argument("--horizon-h", type=float, help="hours of demand the plan is for (default: to the log's end, "
                                                        "or 24)")
    parser.add_argument("--release-lead-h", type=float, default=1.0,
                        help="push a release this long before it opens (default 1)")
    parser.add_argument("--min-requests", type=float, default=1.0,
                        help="push only objects expected to be requested this often (default 1)")
    parser.add_argument("--forecast-sigma", type=float, default=0.0,
                        help="the planner's forecast error: log-normal sigma on each title's demand (default 0)")


def _model(args: argparse.Namespace) -> DemandModel:
    from server.placement import default_model, load_model

    if args.model is None:
        return default_model()
    try:
        return load_model(args.model)
    except OSError as exc:
        raise CommandError(f"cannot read {args.model}: {exc.strerror or exc}") from None


def _plan(args: argparse.Namespace, model: DemandModel, horizon_s: float) -> PlacementPlan:
    from server.placement import plan_placement

    return plan_placement(model, plan_at_s=args.plan_at_h * HOUR_S, horizon_s=horizon_s,
                          release_lead_s=args.release_lead_h * HOUR_S, min_expected_requests=args.min_requests,
                          forecast_sigma=args.forecast_sigma)


def run_plan(args: argparse.Namespace) -> int:
    model = _model(args)
    plan = _plan(args, model, (args.horizon_h or 24.0) * HOUR_S)
    args.out.write_text(json.dumps(plan.as_json(), indent=1) + "\n", encoding="utf-8")
    print(f"placement plan: {len(plan.items)} pushes to {len(plan.budgets)} edges -> {args.out}")
    for edge, budget in plan.budgets.items():
        items = [i for i in plan.items if i.edge == edge]
        print(f"  {edge}: {plan.used[edge] / 1e9:.2f} of {budget / 1e9:.2f} GB, {len(items)} pushes, "
              f"{len({i.title for i in items})} titles")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from server.commands.edge import INTERNAL_ENV, read_key
    from server.internal import internal_headers
    from server.placement import apply_plan, load_plan

    try:
        plan = load_plan(args.plan)
    except OSError as exc:
        raise CommandError(f"cannot read {args.plan}: {exc.strerror or exc}") from None
    urls = dict(plan.edge_urls)
    for spec in args.edge:
        edge_id, sep, url = spec.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise CommandError(f"--edge expects ID=URL with an http(s) URL, got {spec!r}")
        urls[edge_id] = url
    token = read_key(args.internal_token_file, INTERNAL_ENV)
    if token is None:
        raise CommandError(f"give the stack's internal credential with --internal-token-file or ${INTERNAL_ENV}")
    headers = internal_headers(token)
    results = asyncio.run(apply_plan(plan, urls, headers=headers, titles=args.title))
    failed = [r for r in results if r.get("status") != 200]
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            state = (f"{r.get('fetched', 0)} fetched, {r.get('already_cached', 0)} already cached, "
                     f"{r.get('fetched_bytes', 0) / 1e6:.1f} MB") if r.get("status") == 200 else \
                f"FAILED: {r.get('error') or 'HTTP ' + str(r.get('status'))}"
            print(f"  {r['edge']}: {r['title']} {','.join(r['renditions'])} x{r['segments']}: {state}")
        print(f"placement apply: {len(results) - len(failed)} of {len(results)} pushes done")
    return 1 if failed else 0


def run_simulate(args: argparse.Namespace) -> int:
    from server.cachesim import compare, read_access_logs, scaled_to, synthesize
    from server.placement import load_plan

    model = _model(args)
    started = time.perf_counter()
    if args.log:
        try:
            log, stats = read_access_logs(args.log)
        except OSError as exc:
            raise CommandError(f"cannot read an access log: {exc}") from None
        if not len(log):
            raise CommandError("the access logs hold no content request with a known size")
        unknown = sorted(set(log.edges) - {e.id for e in model.edges})
        if unknown:
            raise CommandError(f"the logs name edges the model does not have: {', '.join(unknown)}")
        source = f"{stats.requests} requests from {stats.lines} log lines ({stats.skipped_no_size} without a size)"
        duration_s = float(log.time_s[-1]) if len(log) else 0.0
    else:
        if args.requests < 1 or not args.duration_h > 0:
            raise CommandError("--requests must be >= 1 and --duration-h > 0")
        duration_s = args.duration_h * HOUR_S
        model = scaled_to(model, requests=args.requests, duration_s=duration_s)
        log = synthesize(model, duration_s=duration_s, seed=args.seed)
        source = f"{len(log)} synthetic requests over {args.duration_h:g} h"
    made_s = time.perf_counter() - started
    plan_at_s = args.plan_at_h * HOUR_S
    horizon_s = args.horizon_h * HOUR_S if args.horizon_h else max(HOUR_S, duration_s - plan_at_s)
    plan = load_plan(args.plan) if args.plan else _plan(args, model, horizon_s)
    result = compare(log, model, plan, measure_from_s=plan_at_s)
    if args.json:
        print(json.dumps({"source": source, "log_s": round(made_s, 2), **result.as_dict()}))
        return 0
    print(f"cache simulator: {source} (made in {made_s:.1f} s), {len(model.edges)} edges; counted from hour "
          f"{args.plan_at_h:g} (the plan's time); {len(plan.items)} pushes")
    for line in comparison_lines(result):
        print("  " + line)
    return 0


def comparison_lines(result: Comparison) -> list[str]:
    """LRU alone vs LRU plus placement, one line each (also printed by bench/fleet.py)."""
    lines = [f"{'':<22}{'hit ratio':>10}{'byte hits':>10}{'origin egress':>15}{'fill':>10}{'peak egress':>13}"
             f"{'release hits':>13}{'replay':>14}"]
    for name, r in (("LRU", result.lru), ("LRU + placement", result.placed)):
        lines.append(f"{name:<22}{r.hit_ratio:>10.3f}{r.byte_hit_ratio:>10.3f}{r.origin_bytes / 1e9:>12.1f} GB"
                     f"{r.fill_bytes / 1e9:>7.1f} GB{r.peak_origin_bps / 1e6:>8.1f} Mbit/s{r.window_hit_ratio:>13.3f}"
                     f"{r.requests_per_s / 1e3:>9.0f}k req/s")
    return lines
