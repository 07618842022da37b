"""A new ABR algorithm as a plugin (docs/WRITING_ABR.md): abrkit check cautious-rate --plugin examples/abr_plugin.py"""

from abr import Decision, Observation, register
from abr.estimators import DownloadLog, HarmonicMean


class CautiousRate:
    """The highest rung under `safety` x the harmonic mean of recent downloads; q0 below `panic_s` of buffer."""

    name = "cautious-rate"
    conformance_tags = frozenset({"bandwidth-monotone", "buffer-monotone"})

    def __init__(self, *, safety: float = 0.8, panic_s: float = 4.0) -> None:
        if not 0 < safety <= 1 or panic_s < 0:
            raise ValueError(f"need 0 < safety <= 1 and panic_s >= 0, got {safety}, {panic_s}")
        self.safety, self.panic_s = safety, panic_s
        self._log, self._mean = DownloadLog(), HarmonicMean(window=5)

    def decide(self, obs: Observation) -> Decision:
        for download in self._log.new(obs.downloads):
            self._mean.feed(download)
        estimate_bps = self._mean.estimate_bps()
        if estimate_bps is None or obs.buffer_s < self.panic_s:
            return Decision(quality=0, reason=f"buffer {obs.buffer_s:.1f}s or no estimate -> q0")
        quality = obs.ladder.highest_at_most(self.safety * estimate_bps)
        return Decision(quality=quality, reason=f"{estimate_bps / 1e6:.2f} Mbit/s x {self.safety} -> q{quality}")


register("cautious-rate", CautiousRate, "rate rule with a safety factor and a panic buffer (example plugin)")
