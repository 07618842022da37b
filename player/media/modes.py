"""How much of each segment to decode: a light module, so choosing a mode does not load PyAV.

`all` decodes every sample, `keyframes` only the sync samples, `none` only demuxes and checks the
container (details in docs/DECODE.md).
"""

from __future__ import annotations

from typing import Literal

DecodeMode = Literal["all", "keyframes", "none"]
DECODE_MODES: tuple[DecodeMode, ...] = ("all", "keyframes", "none")
