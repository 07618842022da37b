"""The interop corpus by hand: build it, serve it, or play every case and print the table.

    python -m tests.interop table [--corpus DIR]      # build (or reuse DIR), play every case, Markdown table
    python -m tests.interop serve --corpus DIR [--port N]   # serve DIR on N and N+1; play URLs with abrkit
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.interop.corpus import CASES, FLAVOUR, Tools, build_corpus
from tests.interop.play import command, play_case
from tests.interop.server import misbehaving_servers


def _corpus(path: str | None) -> Path:
    root = Path(path) if path else Path(tempfile.mkdtemp(prefix="abrkit-interop-"))
    if not (root / "src").is_dir():
        tools = Tools.find()
        if isinstance(tools, str):
            raise SystemExit(tools)
        started = time.monotonic()
        build_corpus(tools, root)
        print(f"corpus built in {time.monotonic() - started:.1f} s at {root}\n")
    return root


async def table(root: Path) -> int:
    bad = 0
    print("| case | packaged by / layout | what the server does | result | command |")
    print("| --- | --- | --- | --- | --- |")
    async with misbehaving_servers(root) as (server, _):
        for case in CASES:
            outcome = await play_case(case, server)
            flavour = FLAVOUR[case.flavour]
            verdict = "as expected" if not outcome.problems else "UNEXPECTED: " + "; ".join(outcome.problems)
            bad += bool(outcome.problems)
            behaviour = case.what if case.name != case.flavour else "plain static server"
            print(f"| {case.name} | {flavour.tool}: {flavour.layout} | {behaviour} | {outcome.summary()} ({verdict}) "
                  f"| `{command(case, outcome.url)}` |")
    return 1 if bad else 0


async def serve(root: Path, port: int) -> None:
    from aiohttp import web

    from tests.interop.server import MisbehavingServer

    first, second = MisbehavingServer(root), MisbehavingServer(root)
    first.origin, second.origin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    first.other, second.other = second.origin, first.origin
    runners = []
    for server, p in ((first, port), (second, port + 1)):
        runner = web.AppRunner(server.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", p).start()
        runners.append(runner)
    print(f"serving {root} on {first.origin} and {second.origin}; for example:")
    for case in CASES[:3]:
        print(f"  {command(case, f'{first.origin}/{case.path}')}")
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.interop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("table", "serve"))
    parser.add_argument("--corpus", help="corpus folder (built there when empty)")
    parser.add_argument("--port", type=int, default=8700)
    args = parser.parse_args()
    root = _corpus(args.corpus)
    if args.action == "table":
        return asyncio.run(table(root))
    asyncio.run(serve(root, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
