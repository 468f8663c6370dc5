"""The meetcore-media plugin (entry point `media` in group `meetcore`): the media hooks
(`meetcore_media.hookspecs`), the media server of any meeting server whose engine has
no other (`meetcore_media_backend`, configured from the environment), and
`meetcore serve --audio-streams N`.

The hooks it implements of meetcore-server's are optional: installed without the
server, this plugin only adds the media hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click
import pluggy

from meetcore import hookimpl
from meetcore_media import hookspecs
from meetcore_media._config import AUDIO_STREAMS, Media, MediaConfig

if TYPE_CHECKING:
    from meetcore import Engine
    from meetcore_media.sdp import Offer
    from meetcore_media.sfu import MediaServer

__all__ = [
    "meetcore_addhooks",
    "meetcore_media_backend",
    "meetcore_serve_options",
    "meetcore_serve_plugins",
]


@hookimpl
def meetcore_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    hookspecs.add_to(pluginmanager)


@hookimpl(optionalhook=True)
def meetcore_media_backend(engine: Engine, send: Callable[[str, Offer, int], bool]) -> MediaServer:
    """Media for a server whose engine was given none: `MediaConfig.from_env()`."""
    return Media()(engine, send)


@hookimpl(optionalhook=True)
def meetcore_serve_options() -> Sequence[click.Parameter]:
    return [
        click.Option(
            ["--audio-streams"],
            default=AUDIO_STREAMS,
            show_default=True,
            type=click.IntRange(0, 10_000),
            help="How many others' audio each participant gets when more send it: the "
            "loudest (0: all of them).",
        )
    ]


@hookimpl(optionalhook=True)
def meetcore_serve_plugins(options: Mapping[str, Any]) -> Sequence[object]:
    """`Media` with the environment's ICE settings and `--audio-streams`."""
    return [Media(MediaConfig.from_env(options.get("audio_streams", AUDIO_STREAMS)))]
