"""Synthetic sources for the Python client: what it publishes when given no custom track.

`SyntheticVideoTrack` draws a bar that crosses the picture once a second (small and
slow by default, 320x240 at 15 fps, so that encoding it costs little);
`ToneAudioTrack` plays a 400 Hz tone (or silence). Both pace themselves on the wall
clock, like aiortc's own test tracks. Any aiortc `MediaStreamTrack` can be published
instead: `init_meeting(custom_camera_video_track=..., custom_microphone_audio_track=...)`.

Importing this module imports aiortc and PyAV.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import time

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

__all__ = ["SyntheticVideoTrack", "ToneAudioTrack"]

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.02


class _Paced(MediaStreamTrack):
    """Yields timestamps `step` apart in `clock` units, in time with the wall clock."""

    def __init__(self, clock: int, step: int) -> None:
        super().__init__()
        self._clock = clock
        self._step = step
        self._time_base = fractions.Fraction(1, clock)
        self._start: float | None = None
        self._pts = 0

    async def _next(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
            return 0
        self._pts += self._step
        wait = self._start + self._pts / self._clock - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        return self._pts


class SyntheticVideoTrack(_Paced):
    """A moving bar on grey, `width` x `height` at `fps` frames a second (yuv420p)."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__(VIDEO_CLOCK, VIDEO_CLOCK // fps)
        self.width = width
        self.height = height
        self.fps = fps
        sample = av.VideoFrame(width=width, height=height, format="yuv420p")
        luma, blue, red = sample.planes
        bar = max(2, width // 16)
        self._lumas: list[bytes] = []
        for n in range(fps):  # one frame per position, the bar crossing in a second
            left = (width - bar) * n // max(1, fps - 1)
            row = b"\x50" * left + b"\xeb" * bar + b"\x50" * (width - left - bar)
            row += b"\x00" * (luma.line_size - width)
            self._lumas.append(row * luma.height)
        self._blue = b"\x80" * blue.buffer_size
        self._red = b"\x80" * red.buffer_size
        self.frames = 0

    async def recv(self) -> av.VideoFrame:
        pts = await self._next()
        frame = av.VideoFrame(width=self.width, height=self.height, format="yuv420p")
        luma, blue, red = frame.planes
        luma.update(self._lumas[self.frames % len(self._lumas)])
        blue.update(self._blue)
        red.update(self._red)
        frame.pts = pts
        frame.time_base = self._time_base
        self.frames += 1
        return frame


class ToneAudioTrack(_Paced):
    """A `frequency` Hz tone (0: silence), mono 48 kHz, in 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float = 400.0, volume: float = 0.1) -> None:
        samples = int(AUDIO_RATE * AUDIO_PTIME)
        super().__init__(AUDIO_RATE, samples)
        self.frequency = frequency
        self._samples = samples
        period = AUDIO_RATE / frequency if frequency else 0
        self._tone: list[bytes] = []
        # enough frames that the tone loops without a jump
        count = 1 if not period else round(period) // math.gcd(samples, round(period)) or 1
        for n in range(min(count, 50)):
            wave = array.array(
                "h",
                (
                    int(32767 * volume * math.sin(2 * math.pi * (n * samples + i) / period))
                    if period
                    else 0
                    for i in range(samples)
                ),
            )
            self._tone.append(wave.tobytes())
        self.frames = 0

    async def recv(self) -> av.AudioFrame:
        pts = await self._next()
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(self._tone[self.frames % len(self._tone)])
        frame.pts = pts
        frame.sample_rate = AUDIO_RATE
        frame.time_base = self._time_base
        self.frames += 1
        return frame
