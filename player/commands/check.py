"""`abrkit check`: the conformance suite (abr/conformance.py) on any algorithm, built-in or plugin."""

from __future__ import annotations

import argparse
import functools
import os
import time

from player.commands import add_abr_arguments, list_abrs_requested, load_plugins
from player.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "check", help="run the ABR conformance checks on algorithms (built-in or from a plugin)",
        description="Run abrkit's conformance checks on each named algorithm: decisions in range, reasons given, "
                    "deterministic, and the checks its conformance_tags ask for (monotone in bandwidth or buffer, "
                    "batch = scalar). Prints PASS, FAIL (with what broke) or SKIP per check; exit 1 if any fails.")
    parser.add_argument("names", nargs="*", metavar="SPEC", help="algorithm specs, e.g. rate or rate:safety=0.8")
    parser.add_argument("--all", action="store_true", help="check every registered algorithm")
    add_abr_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from abr import conformance
    from abr.registry import make, names, parse_spec_list

    load_plugins(args)
    if list_abrs_requested(args):
        return 0
    specs = list(args.names) + list(parse_spec_list(*args.abr) if args.abr else ())
    if args.all:
        specs += [n for n in names() if n not in specs]
    if not specs:
        raise CliError("name the algorithms to check (or --all); --list-abr lists them")
    failed = 0
    for spec in specs:
        make(spec)  # an unknown name or a bad parameter is one error line, before any check runs
    for spec in specs:
        factory = functools.partial(make, spec)  # the spec's parameters over each variant's
        tags = ", ".join(sorted(conformance.tags(spec, factory=factory))) or "none"
        print(f"{spec} (conformance tags: {tags})")
        for check in conformance.CHECKS:
            if not conformance.applies(check, spec, factory):
                print(f"  SKIP  {check.name} (needs the {check.tag!r} tag)")
                continue
            started = time.monotonic()
            try:
                check.run(spec, factory=factory)
            except AssertionError as exc:
                failed += 1
                print(f"  FAIL  {check.name}: {exc}")
                continue
            except Exception as exc:  # an algorithm that crashes fails the check, naming the error
                if os.environ.get("ABRKIT_DEBUG"):
                    raise
                failed += 1
                print(f"  FAIL  {check.name}: raised {type(exc).__name__}: {exc}")
                continue
            print(f"  PASS  {check.name} ({time.monotonic() - started:.1f} s)")
    print(f"{failed} check{'s' if failed != 1 else ''} failed" if failed else "all checks passed")
    return 1 if failed else 0
