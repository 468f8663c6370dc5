"""The media server: forwards each participant's encoded audio and video to the others.

The log decides who sends and who receives. For each meeting with media on this
node, a `router.Router` follows the meeting's log: `MediaServer` calls the
`meetcore_media_event` hook with every `ParticipantJoined`, `MediaChanged`,
`ModeChanged` and `ParticipantLeft`, and implements it, keeping the router's members
(mode, mic, webcam) from those events; then it reconciles every transport of the
meeting (`Transport.update`):

- a participant *publishes* `audio` (`video`) when its mode is SEND_AND_RECV, its
  mic (webcam) is on in the log and its media connection is here;
- a participant in SEND_AND_RECV or RECV_ONLY *receives* every other member's
  audio and video that the log says is on; SIGNALLING_ONLY has no media connection.

meetcore's signaling negotiates with SDP (`offer`, `answer`: an `sdp.SdpTransport`
per participant). Frames are forwarded without decoding (`_forward`): each
publisher's receivers hand their encoded frames to a `Publication`; each subscriber's
section has a `ForwardTrack` attached to the publication it carries.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from meetcore import Engine, ErrorCode, Record, Rejected, hookimpl
from meetcore_media import hookspecs
from meetcore_media._config import MediaConfig
from meetcore_media._forward import AIORTC_VERSION, Publication, check_internals
from meetcore_media.router import KINDS, MEDIA_EVENTS, Kind, Member, Router, Transport
from meetcore_media.sdp import SdpTransport, Send

__all__ = ["MEDIA_EVENTS", "MediaConfig", "MediaServer"]

log = logging.getLogger("meetcore.media")


class MediaServer:
    """The built-in media backend: forwards encoded frames between the participants
    connected to this node. Registered with the engine's plugin manager (for
    `meetcore_media_event`) until `close()`.

    `rooms` has a `Router` per meeting with media here, `transports` a `Transport` per
    media connection. `send(connection_id, offer, after)` delivers the server's offers
    through the signaling connection.
    """

    def __init__(self, engine: Engine, send: Send, config: MediaConfig | None = None) -> None:
        problems = check_internals()
        fatal = [problem for problem in problems if AIORTC_VERSION not in problem]
        if fatal:
            raise RuntimeError("aiortc changed; media forwarding cannot work: " + "; ".join(fatal))
        for problem in problems:
            log.warning("%s", problem)
        self.engine = engine
        self.config = config if config is not None else MediaConfig.from_env()
        self.rooms: dict[str, Router] = {}
        self.transports: dict[str, Transport] = {}
        self._send = send
        self._tasks: set[asyncio.Future[Any]] = set()
        hookspecs.add_to(engine.plugins)
        self._name = f"meetcore.media-{id(self):x}"
        engine.plugins.register(self, name=self._name)

    # -- transports, from the signaling ------------------------------------------------

    async def offer(
        self, meeting_id: str, participant_id: str, connection_id: str, sdp: str
    ) -> str:
        """The client's SDP offer: (re)start its media connection; the answer's SDP."""
        transport = await self.open(
            meeting_id,
            participant_id,
            connection_id,
            lambda router, member: SdpTransport.connect(
                router, member, sdp, config=self.config, send=self._send, lost=self._lost
            ),
        )
        assert isinstance(transport, SdpTransport)
        return transport.answer_sdp

    async def open(
        self,
        meeting_id: str,
        participant_id: str,
        connection_id: str,
        connect: Callable[[Router, Member], Awaitable[Transport]],
    ) -> Transport:
        """Make `participant_id`'s transport with `connect(router, member)`, replacing
        the connection's old one, once the meeting's router has followed the log up to
        now (`Rejected` when the participant cannot have one: not in, SIGNALLING_ONLY,
        or it left meanwhile). The transport is then reconciled with the router.
        `connect` closes what it made when it fails; a transport it made is closed here
        when the participant left meanwhile."""
        old = self.transports.get(connection_id)
        if old is not None:  # a new connection replaces it
            await self._close_transport(old)
        router = await self._room(meeting_id)
        router.connecting += 1
        try:
            try:
                member = await self._member(router, participant_id, connection_id)
                transport = await connect(router, member)
            finally:
                router.connecting -= 1
            if member is not router.members.get(participant_id) or (
                self.rooms.get(meeting_id) is not router
            ):
                await transport.close()  # it left meanwhile
                raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, "media: no longer in the meeting")
        except BaseException:  # refused, failed or cancelled: it leaves nothing behind
            await asyncio.shield(self._forget_room(router))
            raise
        router.transports[connection_id] = transport
        self.transports[connection_id] = transport
        self._schedule(router)
        return transport

    async def _member(self, router: Router, participant_id: str, connection_id: str) -> Member:
        """The member that may open a transport (`Rejected` otherwise)."""
        state = await self.engine.state(router.meeting_id)
        try:
            await router.caught_up(state.version if state is not None else 0)
        except TimeoutError:
            raise Rejected(ErrorCode.OPERATION_TIMED_OUT, "the meeting's log is late") from None
        member = router.members.get(participant_id)
        if member is None or member.connection_id != connection_id:
            raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, "media: join the meeting first")
        if member.mode == "SIGNALLING_ONLY":
            raise Rejected(ErrorCode.NOT_SUPPORTED_IN_MODE, "media: none in SIGNALLING_ONLY")
        return member

    async def answer(self, connection_id: str, sdp: str) -> None:
        """The client's answer to our last offer."""
        transport = self.transports.get(connection_id)
        if not isinstance(transport, SdpTransport):
            raise Rejected(ErrorCode.INVALID_PARAMETER, "answer: the server made no offer")
        await transport.answer(sdp)
        self._schedule(transport.router)

    def changed(self, transport: Transport) -> None:
        """A transport's publications changed (a producer opened or closed): reconcile."""
        if not transport.closed:
            self._schedule(transport.router)

    async def close_connection(self, connection_id: str) -> None:
        """Close the connection's transport, if it has one (its signaling ended)."""
        transport = self.transports.get(connection_id)
        if transport is not None:
            await self._close_transport(transport)

    def resumed(self, connection_id: str) -> None:
        """A connection came back after a drop: send it the offer it may have missed."""
        transport = self.transports.get(connection_id)
        if isinstance(transport, SdpTransport):
            transport.resend()

    async def close(self) -> None:
        """Close every media connection and stop following the logs."""
        for transport in list(self.transports.values()):
            await self._close_transport(transport)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self.engine.plugins.is_registered(self):
            self.engine.plugins.unregister(self)

    def _lost(self, transport: Transport) -> None:
        """A transport can no longer be used (closed by its client, failed): close it."""
        self._spawn(self._close_transport(transport))

    async def _close_transport(self, transport: Transport) -> None:
        if transport.closed:
            return
        router = transport.router
        if router.transports.get(transport.connection_id) is transport:
            del router.transports[transport.connection_id]
        if self.transports.get(transport.connection_id) is transport:
            del self.transports[transport.connection_id]
        if router.loudest is not None:  # at once, not at the next _publish
            for publication in transport.publications.values():
                router.loudest.discard(publication)
        await transport.close()
        if router.transports:
            self._schedule(router)
        else:
            await self._forget_room(router)

    # -- following the log ------------------------------------------------------------

    async def _room(self, meeting_id: str) -> Router:
        router = self.rooms.get(meeting_id)
        if router is None:
            router = self.rooms[meeting_id] = Router(meeting_id, self.config.audio_streams)
            try:
                state = await self.engine.state(meeting_id)
            except BaseException:
                del self.rooms[meeting_id]
                raise
            if state is not None:
                for member in state.participants.values():
                    router.members[member.participant_id] = Member(
                        member.participant_id,
                        member.connection_id,
                        member.mode,
                        member.mic_enabled,
                        member.webcam_enabled,
                    )
                router.version = state.version
            router.follower = self._spawn(self._follow(router))
            router.loaded.set()
        await router.loaded.wait()
        return router

    async def _follow(self, router: Router) -> None:
        meeting_id = router.meeting_id
        async for record in self.engine.subscribe(meeting_id, after_version=router.version):
            if isinstance(record.event, MEDIA_EVENTS):
                await self._call("meetcore_media_event", meeting_id=meeting_id, record=record)
            router.advance(record.version)

    @hookimpl
    def meetcore_media_event(self, meeting_id: str, record: Record) -> None:
        router = self.rooms.get(meeting_id)
        if router is None or record.version <= router.version:
            return
        for connection_id in router.apply(record.event):
            transport = router.transports.get(connection_id)
            if transport is not None:
                self._spawn(self._close_transport(transport))
        self._schedule(router)

    async def _call(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of a media hook, awaiting what it returns; one that
        fails is logged and the others still run."""
        caller = getattr(self.engine.plugins.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s of plugin %s failed", hook, impl.plugin_name)

    # -- reconciling: who receives what ----------------------------------------------------

    def _schedule(self, router: Router) -> None:
        router.dirty = True
        if router.reconciler is None or router.reconciler.done():
            router.reconciler = self._spawn(self._reconcile(router))

    async def _reconcile(self, router: Router) -> None:
        while router.dirty:
            router.dirty = False
            await self._publish(router)
            for transport in list(router.transports.values()):
                if not transport.closed:
                    await transport.update(router)

    async def _publish(self, router: Router) -> None:
        """Tell plugins which tracks started or stopped reaching this node."""
        live: dict[tuple[str, Kind], Publication] = {}
        for member in router.members.values():
            for kind in KINDS:
                publication = router.publication(member.participant_id, kind)
                if publication is not None:
                    live[member.participant_id, kind] = publication
        gone = [key for key, was in router.live.items() if live.get(key) is not was]
        new = [key for key, now in live.items() if router.live.get(key) is not now]
        if router.loudest is not None:  # only the voices the log says are on are ranked
            for key in gone:
                if key[1] == "audio":
                    router.loudest.discard(router.live[key])
            for key in new:
                if key[1] == "audio":
                    router.loudest.add(live[key])
        router.live = live
        for participant_id, kind in gone:
            await self._call(
                "meetcore_media_unpublished",
                meeting_id=router.meeting_id,
                participant_id=participant_id,
                kind=kind,
            )
        for participant_id, kind in new:
            await self._call(
                "meetcore_media_published",
                meeting_id=router.meeting_id,
                participant_id=participant_id,
                kind=kind,
                publication=live[participant_id, kind],
            )

    async def _forget_room(self, router: Router) -> None:
        """A router without transports: stop following its log, and tell plugins its
        tracks are gone (`_room` makes it again on the next offer)."""
        if (
            router.transports
            or router.connecting
            or self.rooms.get(router.meeting_id) is not router
        ):
            return
        del self.rooms[router.meeting_id]
        if router.follower is not None:
            router.follower.cancel()
        router.members.clear()
        await self._publish(router)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media task failed", exc_info=task.exception())
