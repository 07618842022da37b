"""What kind of stream a bootstrapped manifest is (on demand, live DASH, live HLS), and options given
for another kind: `abrkit play URL` learns the kind only from the manifest, and an option the
stream's player would not read (a target latency for an on-demand title) is an error naming it,
not a session that quietly differs from the one asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from player.client.hlslive import live_player_class
from player.client.liveplay import LivePlayer
from player.client.mpd import Manifest
from player.errors import CliError

StreamKind = Literal["on-demand", "live DASH", "live HLS"]
STREAM_KINDS: tuple[StreamKind, ...] = get_args(StreamKind)
LIVE: frozenset[StreamKind] = frozenset({"live DASH", "live HLS"})


def stream_kind(manifest: Manifest) -> StreamKind:
    """The kind of stream `manifest` is, as the player that plays it sees it (`live_player_class`)."""
    live_class = live_player_class(manifest)
    if live_class is None:
        return "on-demand"
    return "live DASH" if live_class is LivePlayer else "live HLS"


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamOptions:
    """Options given (as the user spelled them, e.g. `--target-latency-s`), each with the kinds of
    stream it applies to; `check` refuses those that do not apply to the stream bootstrapped."""

    applies_to: tuple[tuple[str, frozenset[StreamKind]], ...] = ()

    def __post_init__(self) -> None:
        for name, kinds in self.applies_to:
            if not kinds or not kinds <= set(STREAM_KINDS):
                raise ValueError(f"{name}: stream kinds must be some of {STREAM_KINDS}, got {sorted(kinds)}")

    def check(self, kind: StreamKind, stream: str) -> None:
        """`CliError` naming each option given that `kind` of stream ignores, and what it is for."""
        wrong = [f"{name} ({_label(kinds)} only)" for name, kinds in self.applies_to if kind not in kinds]
        if wrong:
            raise CliError(f"{stream} is {'an' if kind == 'on-demand' else 'a'} {kind} stream, which "
                           f"{'this option does' if len(wrong) == 1 else 'these options do'} not apply to: "
                           f"{', '.join(wrong)}; leave {'it' if len(wrong) == 1 else 'them'} out")


def _label(kinds: frozenset[StreamKind]) -> str:
    return "live" if kinds == LIVE else " or ".join(k for k in STREAM_KINDS if k in kinds)
