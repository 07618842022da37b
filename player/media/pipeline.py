"""Decoding off the event loop for the headless player: one long-lived decoder per rendition.

The player hands each downloaded segment to `DecodePipeline.submit`; a single worker thread decodes
segments in arrival order (PyAV releases the GIL while decoding), so fetching never waits for
decoding. Failures are counted, not raised: a corrupt segment or a wrong key shows up as failed
frames and an `error` event, and playback goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from player.client.bootstrap import PlaybackSource
from player.client.decoding import DecodeSummary, ErrorLog, InitUrls, SegmentFailure, rendition_key
from player.client.fetch import Fetcher, FetchError
from player.client.hls.aes import DecryptionError as AesError
from player.client.hls.aes import clear_bytes
from player.media.decoder import AudioDecoder, DecodeError, DecoderConfig, DecodeResult, SegmentDecoder, declared_frames
from player.media.tsdecoder import TsAudioDecoder, TsSegmentDecoder


class DecodePipeline:
    """Decodes video (by `mode`) and audio segments in a worker thread, tallying frames (a `Decoder`).
    Renditions are named by `rendition_key` (the Representation id, with the Period after the first).
    Anything a segment throws (a decoder or resampler error on foreign content) fails that segment's
    frames with the reason in `DecodeSummary.errors`; it never ends playback."""

    def __init__(self, source: PlaybackSource, *, mode: str = "all") -> None:
        self.source = source
        self.mode = mode
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abrkit-decode")
        self._inits: dict[str, bytes] = {}
        self._keys = self._rendition_keys(source)
        # presentationTimeOffset per rendition, so decoded pts are presentation times (audio and
        # video tracks usually have different ones: the A/V alignment depends on it)
        self._offsets_s = {rendition_key(p, rep.id): rep.presentation_time_offset_s
                           for p, period in enumerate(source.manifest.periods)
                           for adaptation in period.adaptation_sets for rep in adaptation.representations}
        self._reps = {rendition_key(p, rep.id): rep for p, period in enumerate(source.manifest.periods)
                      for adaptation in period.adaptation_sets for rep in adaptation.representations}
        self._decoders: dict[str, SegmentDecoder | AudioDecoder] = {}
        self._futures: list[Future[None]] = []
        self._frames_decoded = 0
        self._frames_failed = 0
        self._segments = 0
        self._failed_segments = 0
        self._first_frame_wall: float | None = None
        # Why init segments and segments failed (bounded: a stream that keeps failing fails once a
        # segment), with each failed segment's record (for events: the desktop's audio_failure)
        self.errors = ErrorLog()
        self._expected_per_segment: dict[str, int] = {}
        self.continuous = False  # `start`'s: submissions are chunks of one stream (the `Decoder` protocol)
        self._held: dict[str, int] = {}  # continuous: frames of a segment's chunks not out yet, per rendition

    @staticmethod
    def _rendition_keys(source: PlaybackSource) -> dict[str, str | None]:
        """Each rendition's content key (hex), found through its default KID (`rendition_key` names)."""
        keys: dict[str, str | None] = {}
        for p, period in enumerate(source.manifest.periods):
            for adaptation in period.adaptation_sets:
                set_kids = adaptation.default_kids()
                for rep in adaptation.representations:
                    kids = [cp.default_kid for cp in rep.content_protection if cp.default_kid] or list(set_kids)
                    keys[rendition_key(p, rep.id)] = next((source.keys[k] for k in kids if k in source.keys), None)
        return keys

    async def start(self, init_urls: InitUrls, fetcher: Fetcher, *, continuous: bool) -> None:
        """Fetch every rendition's init segment (small, once, before playback starts); `continuous`:
        the submissions are chunks of one stream, so video decoders are not drained after each
        (B-frames held back come out with the next chunk)."""
        self.continuous = continuous

        async def one(rep_id: str, urls: Sequence[str], headers: Mapping[str, str]) -> None:
            try:
                result = await fetcher.fetch(list(urls), headers={"CMCD-Object": "ot=i", **headers})
                rep = self._reps.get(rep_id)
                self._inits[rep_id] = clear_bytes(rep.init.cipher if rep and rep.init else None, result.body)
            except (FetchError, AesError) as exc:
                self.errors.add(f"init segment of {rep_id}: {exc}")

        await asyncio.gather(*(one(rep_id, urls, headers) for rep_id, (urls, headers) in init_urls.items() if urls))

    def submit(self, kind: str, rep_id: str, index: int, data: bytes, *, ends_segment: bool = True) -> None:
        self._futures = pending(self._futures)
        self._futures.append(self._executor.submit(self._decode, kind, rep_id, index, data, ends_segment))

    def _decoder(self, kind: str, rep_id: str) -> SegmentDecoder | AudioDecoder:
        decoder = self._decoders.get(rep_id)
        if decoder is None:
            init = self._inits.get(rep_id)
            rep = self._reps.get(rep_id)
            if init is None and rep is not None and rep.init is None:  # MPEG-TS (HLS): no init segment
                ts = TsAudioDecoder(name=rep_id) if kind == "audio" else TsSegmentDecoder(name=rep_id)
                self._decoders[rep_id] = ts
                return ts
            if init is None:
                raise DecodeError(f"no init segment for {rep_id}", rendition=rep_id, segment_number=None)
            cls = AudioDecoder if kind == "audio" else SegmentDecoder
            config = DecoderConfig(presentation_time_offset_s=self._offsets_s.get(rep_id, 0.0))
            decoder = self._decoders[rep_id] = cls(init, key_hex=self._keys.get(rep_id), name=rep_id, config=config)
        return decoder

    def _decode(self, kind: str, rep_id: str, index: int, data: bytes, ends_segment: bool = True) -> None:
        self._segments += 1
        mode = "all" if kind == "audio" else self.mode
        # A chunk that does not end its segment keeps the video decoder's held-back frames for the next one
        drain = ends_segment or not self.continuous
        result: DecodeResult | None
        try:
            rep = self._reps.get(rep_id)
            if rep is not None and index < rep.segment_count:
                data = clear_bytes(rep.segments[index].cipher, data)  # HLS AES-128: whole-segment encryption
            result = self._decode_segment(self._decoder(kind, rep_id), kind, rep_id, index, data, mode, drain)
        except AesError as exc:
            self._segment_failed(kind, rep_id, index, str(exc), 0, data)
            return
        except DecodeError as exc:
            # The decoder judged the whole segment unusable (e.g. a wrong key): the odd frame that
            # came out of garbage is not a decoded frame, so every expected frame counts as failed.
            expected = exc.result.frames_expected if exc.result is not None else 0
            self._segment_failed(kind, rep_id, index, str(exc), expected, data)
            return
        except Exception as exc:  # noqa: BLE001 - the worker is a boundary: foreign content must not crash playback
            self._segment_failed(kind, rep_id, index, f"{type(exc).__name__}: {exc}", 0, data)
            return
        if kind != "video":
            return
        self._expected_per_segment.setdefault(rep_id, max(result.frames_expected, 1))
        self._frames_decoded += result.frames_decoded
        failed = result.frames_failed
        if self.continuous and mode != "none":
            # Frames a chunk held back come out with a later chunk of the segment; what its last
            # chunk (drained) leaves missing failed.
            balance = self._held.pop(rep_id, 0) + result.frames_expected - result.frames_decoded
            failed = max(0, balance) if drain else 0
            if not drain:
                self._held[rep_id] = max(0, balance)
        self._frames_failed += failed
        if result.frames_decoded and self._first_frame_wall is None and result.first_frame_s is not None:
            self._first_frame_wall = time.monotonic() - result.decode_s + result.first_frame_s

    def _segment_failed(self, kind: str, rep_id: str, index: int, reason: str, expected: int, data: bytes) -> None:
        """A segment of which nothing could be used: every frame it should have given counts as failed."""
        self._failed_segments += 1
        self._failed(f"{kind} segment {index} of {rep_id}: {reason}",
                     SegmentFailure(media="audio" if kind == "audio" else "video", rendition=rep_id,
                                    segment_index=index, reason=reason))
        if kind == "video":
            self._frames_failed += expected or declared_frames(data) or self._expected_per_segment.get(rep_id, 1)

    def _failed(self, message: str, failure: SegmentFailure) -> None:
        self.errors.add(message, failure)

    def _decode_segment(self, decoder: SegmentDecoder | AudioDecoder, kind: str, rep_id: str, index: int,
                        data: bytes, mode: str, drain: bool) -> DecodeResult:
        """One segment (or chunk: `drain` False unless it ends its segment) through its rendition's
        decoder (the desktop player's subclass sends frames and PCM on)."""
        if isinstance(decoder, AudioDecoder):
            return decoder.decode(data, mode=mode, segment_number=index + 1)  # type: ignore[arg-type]
        return decoder.decode(data, mode=mode, segment_number=index + 1, drain=drain)  # type: ignore[arg-type]

    def new_errors(self) -> tuple[str, ...]:
        return self.errors.take_new()

    async def finish(self) -> DecodeSummary:
        """Wait for every submitted segment, then report."""
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self._futures))
        self._executor.shutdown(wait=True)
        return self._summary()

    def close(self) -> None:
        """The session is over: drop the segments still queued, let the one being decoded finish and
        join the worker thread. Idempotent; blocks for at most one segment's decode (call it off the
        event loop). A live session never calls `finish`, so this is what stops its worker."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DecodePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _summary(self) -> DecodeSummary:
        return DecodeSummary(frames_decoded=self._frames_decoded, frames_failed=self._frames_failed,
                             segments=self._segments, failed_segments=self._failed_segments,
                             first_frame_wall=self._first_frame_wall, errors=self.errors.messages(),
                             errors_left_out=self.errors.left_out)


def pending(futures: list[Future[None]]) -> list[Future[None]]:
    """The futures not done yet: a live session submits for hours, so the done ones are let go
    (their failures are already counted in the summary)."""
    return [f for f in futures if not f.done()]
