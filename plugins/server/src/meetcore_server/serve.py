"""`meetcore serve`: the meeting server on uvicorn, on SQLite by default, with zero setup.

On first start without any API key configured it creates a development key and
secret in `meetcore-keys.json` (readable only by its owner), so that
`meetcore token` in the same directory mints tokens the server accepts.

SIGINT or SIGTERM shut it down gracefully: every connected participant leaves
(1001) and sees it, the log is flushed, then the store closes.

What it prints (`--log-level`, `--log-format`) is set up by `meetcore_server._logs`:
its start lines, then a line per join, leave, session and refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import importlib
import inspect
import ipaddress
import logging
import os
import shlex
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import click
import pluggy
import uvicorn

from meetcore import Engine, MediaPlacement, StoreError, one_line, without_password
from meetcore.cli import UsageProblem
from meetcore.keys import DEFAULT_KEYS_FILE, KeysError, ensure_dev_keys, load_keys
from meetcore_server import _logs, _tls
from meetcore_server._http import MeetcoreH11
from meetcore_server.app import Server

__all__ = ["load_plugin", "serve", "serve_command"]

#: Largest WebSocket frame uvicorn reads at all; the signaling answers anything above
#: its own limit (64 KiB) with an error and keeps the connection.
WS_MAX_SIZE = 1 << 20
#: Seconds the data the server sends may stay unacknowledged, or unsent because the
#: client reads nothing (a zero window), before the kernel drops the connection (Linux's
#: TCP_USER_TIMEOUT, set on the listening socket and inherited by every accepted one).
#: Without it a client that stopped reading held its connection, and the task writing
#: to it, for good: pipelined HTTP requests, or a WebSocket sent to, left unread.
SEND_TIMEOUT = 20.0
#: Where a newcomer starts (the page in the checkout's docs/).
QUICKSTART = "docs/quickstart.md"

#: The command's own lines: where it serves, how to get a token (`_logs.BANNER`).
say = logging.getLogger(_logs.BANNER).info


class _Uvicorn(uvicorn.Server):
    """uvicorn, told to let participants leave before it closes their sockets."""

    def __init__(self, config: uvicorn.Config, server: Server) -> None:
        super().__init__(config)
        self.meeting_server = server

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own re-raises the signal once it has shut down, which would end
        # the process with a KeyboardInterrupt before the engine closes its store.
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self.handle_exit, number, None)
        try:
            yield
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                url = _url(sock, tls=self.config.is_ssl)
                say(f"serving on {url}", extra={"url": url})

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.meeting_server.close()
        await super().shutdown(sockets)


def resume_secret() -> bytes:
    """The secret that signs resume tokens: from the API keys, so that every server
    sharing them (after a restart, or the nodes of a deployment) honours a resume."""
    keys = sorted(load_keys().items())
    material = "\n".join(f"{key}\t{secret}" for key, secret in keys).encode()
    return hashlib.sha256(b"meetcore resume tokens\n" + material).digest()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or `click.ClickException` saying why not.

    It is made with proto IPPROTO_TCP, not 0 as `socket.create_server` makes it: the
    sockets it accepts inherit it, and asyncio sets TCP_NODELAY only on sockets whose
    proto says TCP. Without it a reply written in two pieces waited for the client's
    delayed ACK, about 40 ms on every keep-alive request.
    """
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
            timeout_ms = int(SEND_TIMEOUT * 1000)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)  # a gaierror's errno is not an errno
        raise UsageProblem(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url(sock: socket.socket, *, tls: bool = False) -> str:
    """The http (`tls`: https) URL of a listening socket (an IPv6 address in brackets)."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _public_url(url: str) -> str:
    """`--public-url`, checked: an http(s) URL of a host that clients can reach."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not one
    except ValueError:
        raise UsageProblem(f"--public-url: not a port: {url[:200]!r}") from None
    if len(url) > 2000 or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageProblem(f"--public-url: not an http(s) URL: {url[:200]!r}")
    if any(c in url for c in "?#@\\%") or any(c.isspace() or ord(c) < 32 for c in url):
        why = "a base URL has no query, fragment, user, escapes or spaces"
        raise UsageProblem(f"--public-url: {why}: {url[:200]!r}")
    if not _reachable(parts.hostname):
        raise UsageProblem(f"--public-url: clients cannot connect to {parts.hostname}")
    return url.rstrip("/")


def _reachable(host: str) -> bool:
    """Whether clients could connect to `host` (not 0.0.0.0, ::, or such)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_unspecified


def _tls_files(options: dict[str, Any]) -> tuple[str, str, _tls.DevTls | None] | None:
    """The certificate chain and key to serve HTTPS with (`--tls-cert`/`--tls-key`,
    checked, or `--dev-tls`'s, made if need be), None for plain HTTP; `UsageProblem`
    for options or files that cannot be used."""
    cert, key, dev_tls = options["tls_cert"], options["tls_key"], options["dev_tls"]
    if (cert is None) != (key is None):
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise UsageProblem(f"{given} needs {missing}: give both or neither")
    if dev_tls and cert is not None:
        raise UsageProblem(
            "--dev-tls makes its own certificate: give it or --tls-cert/--tls-key, not both"
        )
    if cert is not None:
        _tls.check_files(cert, key)
        return os.path.abspath(cert), os.path.abspath(key), None
    if dev_tls:
        made = _tls.dev_tls(os.getcwd(), options["host"])
        for what in made.made:
            say(f"created {what}")
        return str(made.cert), str(made.key), made
    return None


def _dev_tls_lines(made: _tls.DevTls) -> None:
    """How to trust `--dev-tls`'s certificate authority."""
    ca = shlex.quote(str(made.ca))
    say(
        f"development TLS: the certificate is signed by the development CA {made.ca}; "
        "clients must trust it (never in production)",
        extra={"devCa": str(made.ca)},
    )
    say(f"export REQUESTS_CA_BUNDLE={ca}  # Python requests")
    say(f"export SSL_CERT_FILE={ca}  # Python ssl, websockets, httpx, meetcore_client")
    say(
        f"browsers: import {ca} as a certificate authority, "
        "or start them with --ignore-certificate-errors"
    )


def _start_lines(store: str, url: str, dev: bool, dev_tls: _tls.DevTls | None = None) -> None:
    """Say where the log is, how to get a token, where the demo page and the quickstart
    are (the `serving on` line follows once uvicorn serves)."""
    say(f"store {without_password(store)}")
    if dev_tls is not None:
        _dev_tls_lines(dev_tls)
    if dev:
        say(
            f"get a token with: uv run meetcore token, or GET {url}/get-token",
            extra={"getToken": f"{url}/get-token"},
        )
        say("development mode: /get-token gives anyone a moderator's token; never in production")
        say(f"demo page: {url}/", extra={"demo": f"{url}/"})
    else:
        say(
            "get a token with: uv run meetcore token "
            "(GET /get-token is off: it needs meetcore serve --dev)"
        )
    say(f"new here? {QUICKSTART} walks through a first meeting step by step")


def load_plugin(spec: str) -> object:
    """The plugin object `--plugin module:object` names (`module` alone: the module),
    imported with the current directory on the path; `UsageProblem` saying why it
    cannot be used (not importable, not there, a class, no meetcore hook in it)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or len(spec) > 300 or any(c.isspace() for c in spec):
        raise UsageProblem(f"--plugin: not module:object: {one_line(spec, 200)!r}")
    problem = f"--plugin {one_line(spec, 200)}"
    # the current directory on the path for this import only, as `python -m` has it: a
    # file there must not shadow a package imported later (aiortc, at the first offer)
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        plugin: object = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # the user's module: whatever it raises
        why = one_line(f"{type(error).__name__}: {error}", 300)
        raise UsageProblem(f"{problem}: cannot import {module_name}: {why}") from None
    finally:
        if added and os.getcwd() in sys.path:
            sys.path.remove(os.getcwd())
    try:
        for name in attribute.split(".") if attribute else ():
            plugin = getattr(plugin, name)
        hooks = [name for name in dir(plugin) if _is_hookimpl(plugin, name)]
    except AttributeError:
        raise UsageProblem(f"{problem}: {module_name} has no {attribute}") from None
    except Exception as error:  # an object whose attributes raise
        why = one_line(f"{type(error).__name__}: {error}", 300)
        raise UsageProblem(f"{problem}: cannot read it: {why}") from None
    if inspect.isclass(plugin):
        raise UsageProblem(f"{problem} is a class: name an instance of it")
    if not hooks:
        raise UsageProblem(f"{problem} implements no meetcore hook (@meetcore.hookimpl)")
    late = sorted(set(hooks) & {"meetcore_serve_options", "meetcore_serve_plugins"})
    if late:
        why = "only installed plugins (an entry point in the group meetcore) extend serve"
        raise UsageProblem(f"{problem} implements {', '.join(late)}: {why}")
    return plugin


def _is_hookimpl(plugin: object, name: str) -> bool:
    return name.startswith("meetcore_") and hasattr(getattr(plugin, name, None), "meetcore_impl")


def _serve_plugins(pm: pluggy.PluginManager, options: dict[str, Any]) -> list[object]:
    """The plugin objects the installed plugins configure from the options
    (`meetcore_serve_plugins`), then those `--plugin` names, in order."""
    try:
        made = pm.hook.meetcore_serve_plugins(options=options)
    except ValueError as error:  # a bad MEETCORE_WEBHOOK_*, network, ...: exit 2
        raise UsageProblem(str(error)) from None
    plugins = [plugin for some in made for plugin in some]
    return [*plugins, *(load_plugin(spec) for spec in options["plugins"])]


async def run(
    *,
    sock: socket.socket,
    store: str,
    dev: bool,
    lease_ttl: float,
    plugins: Sequence[object] = (),
    opened: Callable[[], object] = lambda: None,
    public_url: str | None = None,
    **uvicorn_options: Any,
) -> None:
    """Open the engine on `store` (with `plugins`, and `_logs.MeetingLog`, which logs
    joins, leaves and sessions), call `opened`, and serve on `sock` until SIGINT or
    SIGTERM. uvicorn logs through the loggers that `_logs.configure` set up, its access
    log only when they show debug."""
    if _logs.MeetingLog.wanted():
        plugins = [*plugins, _logs.MeetingLog()]
    async with Engine.open(store=store, lease_ttl=lease_ttl, plugins=plugins) as engine:
        opened()
        server = Server(
            engine,
            dev=dev,
            secret=resume_secret(),
            public_url=public_url,
        )
        if not engine.plugins.hook.meetcore_media_backend.get_hookimpls():
            say("no media: audio and video need meetcore-media installed (signaling works)")
        if server.signaling.clustered:
            say(
                f"a cluster node at {public_url}: each join goes to its meeting's media node",
                extra={"publicUrl": public_url},
            )
        elif isinstance(engine.store, MediaPlacement):
            say(
                "not a cluster node: it listens on every interface, so the other nodes "
                "would not know where to send its meetings' participants; give --public-url"
            )
        config = uvicorn.Config(
            server.app,
            lifespan="on",
            ws_max_size=WS_MAX_SIZE,
            ws_per_message_deflate=False,  # small JSON frames: compressing costs more than it saves
            http=MeetcoreH11,  # header timeout, no Content-Length with Transfer-Encoding
            log_config=None,  # the process's logging is `_logs.configure`'s
            log_level=None,
            access_log=logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO),
            **uvicorn_options,
        )
        await _Uvicorn(config, server).serve(sockets=[sock])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8700, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--store",
    default="sqlite:///meetcore.db",
    show_default=True,
    help="Event store URL (sqlite:///path, memory://, postgresql://...).",
)
@click.option(
    "--dev", is_flag=True, help="Development mode: serve GET /get-token (never in production)."
)
@click.option(
    "--tls-cert",
    metavar="FILE",
    help="Serve HTTPS and wss:// with this PEM certificate chain (the server's first), "
    "with --tls-key.",
)
@click.option("--tls-key", metavar="FILE", help="The certificate's PEM private key, unencrypted.")
@click.option(
    "--dev-tls",
    is_flag=True,
    help="Development only: serve HTTPS with a certificate for localhost signed by a "
    "development CA that it makes in the current directory (meetcore-dev-*.pem) and "
    "reuses; it says how to trust the CA.",
)
@click.option(
    "--lease-ttl",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.2, 3600),
    help="Seconds a silent connection keeps its participant in the meeting.",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="The URL clients reach this node at (default: the address it listens on). The "
    "nodes of a cluster (a PostgreSQL store) announce it to each other and send each "
    "join to the node that carries the meeting's media.",
)
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE:OBJECT",
    help="A plugin object (or module) to run the engine with, besides the installed "
    "ones (repeatable), e.g. my_app.plugins:recorder.",
)
@click.option(
    "--log-level",
    type=click.Choice(_logs.LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="What is logged: info tells of each join, leave, session and refusal; debug "
    "adds every event and uvicorn's access log.",
)
@click.option(
    "--log-format",
    type=click.Choice(_logs.FORMATS, case_sensitive=False),
    default="text",
    show_default=True,
    help="text: lines for people; json: one JSON object a line, with fields.",
)
@click.pass_obj
def serve(pm: pluggy.PluginManager | None, /, **options: Any) -> None:
    """Run the meeting server: REST rooms API, WebSocket signaling, on one event store."""
    # logging first: plugins made from the options may log (a warning about them)
    _logs.configure(options["log_level"], options["log_format"])
    plugins = _serve_plugins(pm, options) if pm is not None else []
    host, port, store, dev = options["host"], options["port"], options["store"], options["dev"]
    public_url: str | None = options["public_url"]
    try:
        if not load_keys():
            api_key, _ = ensure_dev_keys()
            say(f"created a development API key {api_key} in {DEFAULT_KEYS_FILE}")
    except KeysError as error:
        raise UsageProblem(str(error)) from None
    tls = _tls_files(options)
    checked = _public_url(public_url) if public_url is not None else None
    sock = listen(host, port)
    url = _url(sock, tls=tls is not None)
    files = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls is not None else {}
    # By default a node tells the others to send clients to the address it listens on,
    # unless that is every interface: then it is no cluster node without --public-url.
    default = url if _reachable(urlsplit(url).hostname or "") else None
    try:
        anyio.run(
            lambda: run(
                sock=sock,
                store=store,
                dev=dev,
                lease_ttl=options["lease_ttl"],
                plugins=plugins,
                opened=lambda: _start_lines(store, url, dev, tls[2] if tls else None),
                public_url=checked or default,
                **files,
            )
        )
    except ssl.SSLError as error:  # the files changed since they were checked
        why = one_line(str(error.reason or error), 200)
        raise UsageProblem(f"--tls-cert/--tls-key: OpenSSL cannot use them: {why}") from None
    except (StoreError, ValueError) as error:
        raise UsageProblem(str(error)) from None
    except pluggy.PluginValidationError as error:  # a --plugin implementing unknown hooks
        raise UsageProblem(f"a plugin cannot be used: {one_line(str(error), 300)}") from None
    finally:
        sock.close()


def serve_command(pm: pluggy.PluginManager) -> click.Command:
    """`meetcore serve` with the options the installed plugins add (`meetcore_serve_options`:
    `--audio-streams` from meetcore-media, `--webhook-allow-network` from meetcore-webhooks)."""
    answers = reversed(pm.hook.meetcore_serve_options())  # in the order plugins were loaded
    extra = [option for options in answers for option in options]
    command = copy.copy(serve)
    names = {param.name for param in serve.params}
    for option in extra:
        if option.name in names:
            raise ValueError(f"two plugins add the meetcore serve option {option.name!r}")
        names.add(option.name)
    # before --log-level and --log-format, which end the help
    command.params = [*serve.params[:-2], *extra, *serve.params[-2:]]
    return command
