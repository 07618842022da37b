"""Playing one corpus case headless, as `abrkit play URL --headless` does, and judging the result."""

from __future__ import annotations

from dataclasses import dataclass

from player.client.fetch import FetchConfig
from player.client.harness import UrlTarget, pipeline_factory, play_headless
from player.client.headless import PlaybackReport, PlayerConfig
from player.errors import CliError
from tests.interop.corpus import Case
from tests.interop.server import MisbehavingServer

# Short timeouts so a stalled BaseURL fails over in about a second (the default waits 8 s).
FETCH = FetchConfig(connect_timeout_s=1.0, first_byte_timeout_s=1.0, read_timeout_s=1.0, backoff_base_s=0.01,
                    backoff_max_s=0.05)


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    url: str
    report: PlaybackReport | None
    error: str | None  # the report's error, or the one line a CliError would print

    @property
    def problems(self) -> list[str]:
        """What is wrong with this outcome for its case (empty: as expected)."""
        import re

        case, report = self.case, self.report
        if case.error is not None:
            if self.error is None:
                return [f"expected an error matching {case.error!r}, but it played"]
            problems = [] if re.search(case.error, self.error) else [f"error {self.error!r} !~ {case.error!r}"]
            if "\n" in self.error or "Traceback" in self.error:
                problems.append("the error is not one line")
            return problems
        if self.error is not None or report is None:
            return [f"failed: {self.error}"]
        problems = []
        if report.frames_failed:
            problems.append(f"{report.frames_failed} frames failed")
        if report.frames_decoded != case.frames:
            problems.append(f"{report.frames_decoded} frames decoded, {case.frames} expected")
        if case.fetch_note and not report.http_counts.get(case.fetch_note):
            problems.append(f"the player did not notice ({case.fetch_note} = 0)")
        return problems

    def summary(self) -> str:
        if self.report is None or self.error is not None:
            return f"error: {self.error}"
        r = self.report
        notes = ", ".join(f"{k} {v}" for k, v in sorted(r.http_counts.items()) if v)
        return (f"{r.metrics.segments} segments, {r.periods} period(s), {r.frames_decoded} frames decoded, "
                f"{r.frames_failed} failed" + (f"; {notes}" if notes else ""))


def command(case: Case, url: str) -> str:
    keys = "".join(f" --key {kid}:{key}" for kid, key in case.keys.items())
    return f"abrkit play {url} --headless --json{keys}"


async def play_case(case: Case, server: MisbehavingServer, *, decode: str = "all") -> Outcome:
    url = f"{server.origin}/{case.path}"
    try:
        report = await play_headless(UrlTarget(url=url, keys=case.keys), PlayerConfig(abr="rate", decode=decode),
                                     fetch=FETCH, decoder_factory=pipeline_factory(decode))
    except CliError as exc:
        return Outcome(case, url, None, str(exc))
    return Outcome(case, url, report, report.error)
