"""`POST /infra/v1/meetings/server-init-config`: the first call of VideoSDK's Python SDK.

The SDK posts `{"roomId": ...}` with the token as `Authorization` (raw, no `Bearer`),
always over HTTPS, and reads `data`: `signalingUrl` (the WebSocket base it connects
to), `baseUrl`, and `iceServers`, the ICE servers as a JSON list encrypted with
AES-256-CBC under a key and IV fixed in the SDK, then base64 (`encrypt_ice_servers`).
It must never get a 2xx without `data`: it then falls back to VideoSDK's cloud and
sends it the token. So every refusal here is a 4xx with `{"error", "code"}` (a 503 when
the store fails).

In a cluster, `signalingUrl` is the node carrying the meeting's media (the server's
`media_node`, as meetcore's own signaling redirects to it), so that every VideoSDK
client of a meeting meets in one SFU.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from meetcore import Engine, ErrorCode, Rejected, StoreError, one_line
from meetcore.auth import authenticate, strip_bearer
from meetcore_media import MediaConfig

__all__ = ["INIT_CONFIG_PATH", "SIGNALING_PATH", "InitConfig", "encrypt_ice_servers"]

#: Where the SDK asks for its configuration.
INIT_CONFIG_PATH = "/infra/v1/meetings/server-init-config"
log = logging.getLogger("meetcore.videosdk")

#: Where VideoSDK's signaling is to be served (the `signalingUrl` answered).
SIGNALING_PATH = "/videosdk"
#: The largest body read.
MAX_BODY_BYTES = 64 * 1024
#: The key and IV the SDK decrypts `iceServers` with: facts of its protocol, public in
#: every copy of it (videosdk 0.4.1, `utils.py`), not secrets of anyone's.
_KEY = b"YSJ!gMW!Y1Eu8j1NTb^rZyQiNLplYz*n"
_IV = b"y^LKkEGk0FwxjQ#B"


_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


class _Body(msgspec.Struct, forbid_unknown_fields=False):
    roomId: str


def encrypt_ice_servers(servers: Sequence[str | Mapping[str, Any]]) -> str:
    """The SDK's `iceServers`: `[{"urls", "username"?, "credential"?}, ...]` as JSON,
    AES-256-CBC with PKCS#7 padding under its key and IV, base64."""
    listed = [{"urls": s} if isinstance(s, str) else dict(s) for s in servers]
    plain = json.dumps(listed, separators=(",", ":")).encode()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_KEY), modes.CBC(_IV)).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def _refuse(code: ErrorCode, message: str, room_id: str = "?", status: int = 0) -> Response:
    """The refusal, logged (INFO): the SDK shows the app only "Failed to Join"."""
    if not status:
        status = 401 if code in (ErrorCode.INVALID_API_KEY, ErrorCode.INVALID_TOKEN) else 403
        if code is ErrorCode.INVALID_PARAMETER:
            status = 400
    log.info("refused server-init-config for %s: %d %s", one_line(room_id, 80), int(code), message)
    return JSONResponse({"error": message, "code": int(code)}, status_code=status)


class InitConfig:
    """The endpoint, on `engine` (whose auth plugins check the token). `public_url`: the
    URL clients reach this node at (`meetcore serve --public-url`, a cluster node's);
    without it, the URL the request came to."""

    def __init__(
        self,
        engine: Engine,
        public_url: str | None = None,
        home: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.engine = engine
        self.public_url = public_url
        # in a cluster: the URL of the node carrying the meeting's media, if not this one
        self.home = home
        # read once: a wrong MEETCORE_ICE_SERVERS is refused where the server is made
        self.ice_servers = encrypt_ice_servers(MediaConfig.from_env().ice_servers)

    async def answer(self, request: Request) -> Response:
        body = await _read(request)
        if body is None:
            why = f"the body is over {MAX_BODY_BYTES} bytes"
            return _refuse(ErrorCode.INVALID_PARAMETER, why, status=413)
        try:
            room_id = msgspec.json.decode(body, type=_Body).roomId
        except msgspec.ValidationError as error:
            return _refuse(ErrorCode.INVALID_PARAMETER, f"the body: {one_line(str(error), 200)}")
        except msgspec.DecodeError:
            return _refuse(ErrorCode.INVALID_PARAMETER, 'the body is not JSON: {"roomId": ...}')
        token = strip_bearer(request.headers.get("authorization"))
        try:  # the rules of every front end: room binding, roles, one-line refusals
            authenticate(self.engine.plugins, token, meeting_id=room_id, action="join")
        except Rejected as refused:
            return _refuse(refused.code, refused.message, room_id)
        try:
            node = await self.home(room_id) if self.home is not None else None
        except StoreError as failure:
            log.warning("placing meeting %s failed: %s", one_line(room_id, 80), failure)
            why = "the server's store failed: try again"
            code = int(ErrorCode.SOMETHING_WENT_WRONG)
            return JSONResponse({"error": why, "code": code}, status_code=503)
        where = node if node is not None else self.public_url  # the media node's, or ours
        if where is not None:
            base = urlsplit(where)
            secure, host = base.scheme == "https", base.netloc
        else:
            secure, host = request.url.scheme == "https", request.headers.get("host", "")
            if not _HOST.fullmatch(host):
                why = "the Host header is not a host[:port]"
                return _refuse(ErrorCode.INVALID_PARAMETER, why, room_id)
        data = {
            "baseUrl": host,
            "signalingUrl": f"{'wss' if secure else 'ws'}://{host}{SIGNALING_PATH}",
            "iceServers": self.ice_servers,
        }
        return JSONResponse({"data": data})


async def _read(request: Request) -> bytes | None:
    """The body, None when it is larger than `MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)
