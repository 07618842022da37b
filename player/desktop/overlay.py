"""What the desktop player draws over the video: stats panel with a 60 s graph, spinner, summary.

Plain pyglet shapes and labels in batches. Text changes a few times a second at most (a label
relayout is the expensive part), the graph is rebuilt at the same pace, the spinner turns every frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import pyglet

PANEL_RGBA = (0, 0, 0, 170)
TEXT_RGBA = (235, 235, 235, 255)
BITRATE_RGBA = (90, 170, 255, 255)
BUFFER_RGBA = (120, 220, 120, 255)
FONT_SIZE_PT = 11
GRAPH_SPAN_S = 60.0


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One graph sample: wall seconds since the window opened, the bitrate on screen, the buffer."""

    time_s: float
    bitrate_bps: float
    buffer_s: float


class History:
    """The last `span_s` seconds of (bitrate, buffer) samples for the live graph."""

    def __init__(self, span_s: float = GRAPH_SPAN_S) -> None:
        self.span_s = span_s
        self.points: deque[HistoryPoint] = deque()

    def add(self, point: HistoryPoint) -> None:
        self.points.append(point)
        while self.points and self.points[0].time_s < point.time_s - self.span_s:
            self.points.popleft()


class StatsPanel:
    """Top-left panel: text lines, then a graph of bitrate (blue) and buffer (green) over 60 s."""

    WIDTH_PX = 380
    GRAPH_HEIGHT_PX = 90
    MARGIN_PX = 10

    def __init__(self) -> None:
        self.batch = pyglet.graphics.Batch()
        self._background = pyglet.graphics.Group(order=0)
        self._foreground = pyglet.graphics.Group(order=1)
        self._panel = pyglet.shapes.Rectangle(0, 0, self.WIDTH_PX, 10, color=PANEL_RGBA, batch=self.batch,
                                              group=self._background)
        self._label = pyglet.text.Label("", font_size=FONT_SIZE_PT, color=TEXT_RGBA, multiline=True,
                                        width=self.WIDTH_PX - 2 * self.MARGIN_PX, anchor_y="top",
                                        batch=self.batch, group=self._foreground)
        self._axis = pyglet.shapes.Rectangle(0, 0, self.WIDTH_PX - 2 * self.MARGIN_PX, self.GRAPH_HEIGHT_PX,
                                             color=(40, 40, 40, 200), batch=self.batch, group=self._background)
        self._legend = pyglet.text.Label("", font_size=FONT_SIZE_PT - 2, color=TEXT_RGBA, batch=self.batch,
                                         group=self._foreground)
        self._lines: list[pyglet.shapes.MultiLine] = []

    def update(self, lines: list[str], history: History, window_height_px: int) -> None:
        """New text and graph, laid out from the top-left corner of a window this tall."""
        m = self.MARGIN_PX
        self._label.text = "\n".join(lines)
        text_height = self._label.content_height
        top = window_height_px - m
        height = text_height + self.GRAPH_HEIGHT_PX + 4 * m + FONT_SIZE_PT
        self._panel.x, self._panel.y, self._panel.height = m, top - height, height
        self._label.x, self._label.y = 2 * m, top - m
        graph_x, graph_y = 2 * m, top - height + m
        self._axis.x, self._axis.y = graph_x, graph_y
        self._legend.x, self._legend.y = graph_x, graph_y + self.GRAPH_HEIGHT_PX + 4
        self._rebuild_graph(history, graph_x, graph_y)

    def _rebuild_graph(self, history: History, x0: float, y0: float) -> None:
        for line in self._lines:
            line.delete()
        self._lines = []
        points = list(history.points)
        if not points:
            self._legend.text = ""
            return
        width = self.WIDTH_PX - 4 * self.MARGIN_PX
        now = points[-1].time_s
        top_bps = max(max(p.bitrate_bps for p in points), 1.0)
        top_buffer_s = max(max(p.buffer_s for p in points), 1.0)
        self._legend.text = (f"{history.span_s:.0f} s: bitrate (blue, top {top_bps / 1e6:.2f} Mbit/s), "
                             f"buffer (green, top {top_buffer_s:.0f} s)")
        if len(points) < 2:
            return
        height = self.GRAPH_HEIGHT_PX - 4

        def xy(p: HistoryPoint, value: float, top: float) -> tuple[float, float]:
            return x0 + width * (1 - (now - p.time_s) / history.span_s), y0 + 2 + height * value / top

        for values, top, color in (([p.bitrate_bps for p in points], top_bps, BITRATE_RGBA),
                                   ([p.buffer_s for p in points], top_buffer_s, BUFFER_RGBA)):
            coords = [xy(p, v, top) for p, v in zip(points, values)]
            self._lines.append(pyglet.shapes.MultiLine(*coords, thickness=2, color=color, batch=self.batch,
                                                       group=self._foreground))

    def draw(self) -> None:
        self.batch.draw()


class Spinner:
    """A turning arc and a word under it (rebuffering, loading, seeking, paused) at the window centre."""

    RADIUS_PX = 28
    TURNS_PER_S = 1.2

    def __init__(self) -> None:
        self.batch = pyglet.graphics.Batch()
        self._arc = pyglet.shapes.Arc(0, 0, self.RADIUS_PX, angle=270, thickness=6, color=(255, 255, 255, 230),
                                      batch=self.batch)
        self._label = pyglet.text.Label("", font_size=FONT_SIZE_PT + 3, color=TEXT_RGBA, anchor_x="center",
                                        anchor_y="top", batch=self.batch)
        self._text = ""

    def draw(self, text: str, *, turning: bool, time_s: float, width_px: int, height_px: int) -> None:
        if text != self._text:
            self._label.text = self._text = text
        cx, cy = width_px / 2, height_px / 2
        self._arc.position = (cx, cy)
        self._arc.visible = turning
        self._arc.rotation = (time_s * self.TURNS_PER_S * 360.0) % 360.0
        self._label.position = (cx, cy - self.RADIUS_PX - 12, 0)
        self.batch.draw()


class SummaryPanel:
    """The end-of-session summary, centred."""

    WIDTH_PX = 520

    def __init__(self) -> None:
        self.batch = pyglet.graphics.Batch()
        self._panel = pyglet.shapes.Rectangle(0, 0, self.WIDTH_PX, 10, color=(0, 0, 0, 200), batch=self.batch,
                                              group=pyglet.graphics.Group(order=0))
        self._label = pyglet.text.Label("", font_size=FONT_SIZE_PT + 1, color=TEXT_RGBA, multiline=True,
                                        width=self.WIDTH_PX - 30, anchor_y="top", batch=self.batch,
                                        group=pyglet.graphics.Group(order=1))
        self._text = ""

    def draw(self, lines: list[str], *, width_px: int, height_px: int) -> None:
        text = "\n".join(lines)
        if text != self._text:
            self._label.text = self._text = text
        height = self._label.content_height + 30
        x, y = (width_px - self.WIDTH_PX) / 2, (height_px - height) / 2
        self._panel.x, self._panel.y, self._panel.height = x, y, height
        self._label.x, self._label.y = x + 15, y + height - 15
        self.batch.draw()
