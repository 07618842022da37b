"""What kind of session `abrkit play` runs, and options given for another kind. Three things decide
what an option can do: the stream (on demand, live DASH, live HLS: known only from the bootstrapped
manifest), the player (a window, or headless), the target (a URL played directly, a title
through a stack's gateway, the demo on a stack of its own) and the link (shaped by a trace, or not). An option the session would not read
(a target latency for an on-demand title, `--exit-after` with no window, `--user` for a URL) is an
error naming it, not a session that quietly differs from the one asked for.

Light at import (no HTTP client, no MPD reader): `abrkit play` checks the player and the target before
its demo stack starts; the stream's kind is checked by the harness once the manifest is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from player.errors import CliError

if TYPE_CHECKING:
    from player.client.mpd import Manifest

StreamKind = Literal["on-demand", "live DASH", "live HLS"]
PlayerKind = Literal["window", "headless"]
TargetKind = Literal["URL", "title", "demo"]
LinkKind = Literal["with --trace", "without --trace"]
SessionKind = StreamKind | PlayerKind | TargetKind | LinkKind
STREAM_KINDS: tuple[StreamKind, ...] = get_args(StreamKind)
PLAYER_KINDS: tuple[PlayerKind, ...] = get_args(PlayerKind)
TARGET_KINDS: tuple[TargetKind, ...] = get_args(TargetKind)
LINK_KINDS: tuple[LinkKind, ...] = get_args(LinkKind)
# One session is one kind of each: an option applies to some kinds of one of them.
KIND_AXES: tuple[tuple[SessionKind, ...], ...] = (STREAM_KINDS, PLAYER_KINDS, TARGET_KINDS, LINK_KINDS)
LIVE: frozenset[StreamKind] = frozenset({"live DASH", "live HLS"})

# How `check` says what the session is: "{subject} is an on-demand stream", "{subject} plays headless".
_IS: dict[SessionKind, str] = {
    "on-demand": "is an on-demand stream", "live DASH": "is a live DASH stream", "live HLS": "is a live HLS stream",
    "window": "plays in a window", "headless": "plays headless (no window)",
    "URL": "is a URL, played directly (not through a stack's gateway)",
    "title": "is a title, played through a stack's gateway", "demo": "plays on a stack of its own",
    "with --trace": "plays through a shaped link", "without --trace": "plays on an unshaped link (no --trace)"}


def stream_kind(manifest: Manifest) -> StreamKind:
    """The kind of stream `manifest` is, as the player that plays it sees it (`live_player_class`)."""
    from player.client.hlslive import live_player_class
    from player.client.liveplay import LivePlayer

    live_class = live_player_class(manifest)
    if live_class is None:
        return "on-demand"
    return "live DASH" if live_class is LivePlayer else "live HLS"


def _axis(kind: SessionKind) -> tuple[SessionKind, ...]:
    return next(axis for axis in KIND_AXES if kind in axis)


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamOptions:
    """Options given (as the user spelled them, e.g. `--target-latency-s`), each with the kinds of
    session it applies to (all of one axis: stream, player, target or link); `check` refuses those that
    do not apply to the session's kind on that axis."""

    applies_to: tuple[tuple[str, frozenset[SessionKind]], ...] = ()

    def __post_init__(self) -> None:
        for name, kinds in self.applies_to:
            if not kinds or not any(kinds <= set(axis) for axis in KIND_AXES):
                raise ValueError(f"{name}: kinds must be some of one of {KIND_AXES}, got {sorted(kinds)}")

    def check(self, kind: SessionKind, subject: str) -> None:
        """`CliError` naming each option given that `kind` of session ignores, and what it is for;
        options for another axis (a live-only option, checked for the player) are left alone.
        `subject`: what the session plays or how, e.g. a URL, "title 'bbb'", "with --headless, the session"."""
        axis = set(_axis(kind))
        wrong = [f"{name} ({_label(kinds)} only)" for name, kinds in self.applies_to
                 if kinds <= axis and kind not in kinds]
        if wrong:
            raise CliError(f"{subject} {_IS[kind]}, which "
                           f"{'this option does' if len(wrong) == 1 else 'these options do'} not apply to: "
                           f"{', '.join(wrong)}; leave {'it' if len(wrong) == 1 else 'them'} out")


def _label(kinds: frozenset[SessionKind]) -> str:
    return "live" if kinds == LIVE else " or ".join(k for k in _axis(next(iter(kinds))) if k in kinds)
