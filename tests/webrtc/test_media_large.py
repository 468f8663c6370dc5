"""A large meeting through a real `meetcore serve` (issue 20), run by the benchmark's
many-party mode (`benchmarks/media.py --many`): 50 participants, 10 publishing video
(2 of them audio too), 40 receiving without decoding (`decode=False`) in three
processes, every candidate on 127.0.0.1. Small video (160x120 at 10 fps, 100 kbps)
keeps the clients within this machine's two cores; docs/media.md has what the server
sustains at 640x480 and with every publisher speaking.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "media.py"


def test_fifty_participants_ten_publishing_everyone_gets_every_stream() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--many", "10", "40", "--audio", "2", "--processes", "3"),
            *("--size", "160x120", "--fps", "10", "--bitrate", "100000"),
            *("--modes", "meetcore", "--seconds", "3", "--json"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MEETCORE_BENCH_READY_WITHIN": "30"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)["many/10x40"]
    print(result)
    assert result["forwarded_streams"] == 10 * 9 + 10 * 40  # videos
    assert result["forwarded_audio_streams"] == 2 * (9 + 40)
    # every participant got a frame of every stream it should within 30 s (it took 5 to
    # 18 s here), and they kept flowing
    # (the sections that brought nothing say whether the server sent on them at all)
    assert result["streams_never_received"] == 0, result["silent_sections"]
    assert result["seconds_to_every_stream"] < 30
    assert result["frames_delivered_percent"] > 80
    assert result["loss_percent"] < 5
