"""Run a real `meetcore serve` for tests: yours or ours.

`ServeProcess` starts the server in a subprocess (`--dev`, on a free port of 127.0.0.1,
SQLite in its directory unless told otherwise, or the command line you give, such as
`uv run meetcore serve --port 8700`), keeps everything it prints, and stops it::

    with ServeProcess(tmp_path) as server:  # waits until it serves
        httpx.get(f"{server.url}/get-token")
        assert server.terminate() == 0, server.output

Nothing here needs pytest: a server that does not start, dies, or ignores a signal is a
`RuntimeError` with its output.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self

import anyio
import anyio.to_thread

__all__ = ["ServeProcess", "clean_env", "free_port", "serve_refuses"]

#: The line that says the server serves, as text (`meetcore: serving on URL`) or JSON.
_SERVING = re.compile(r'serving on (https?://[^\s"]+)')


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any MEETCORE_* variable, unbuffered, `env` over it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEETCORE_")}
    clean["PYTHONUNBUFFERED"] = "1"
    clean.update(env or {})
    return clean


def serve_refuses(directory: str | Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run `meetcore serve *args` in `directory` (without MEETCORE_* variables but those
    of `env`), which must refuse to start as a usage error: exit 2, no traceback, one
    line that says "error" on stderr. That line; a `RuntimeError` with the output
    otherwise."""
    done = subprocess.run(
        [sys.executable, "-m", "meetcore.cli", "serve", *args],
        cwd=directory,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    if done.returncode != 2 or "Traceback" in done.stderr or len(errors) != 1:
        raise RuntimeError(f"meetcore serve {args} exited {done.returncode}: {done.stderr}")
    return errors[0]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """`meetcore serve` in `cwd`; what it prints (stdout and stderr) is kept in `lines`."""

    def __init__(
        self,
        cwd: str | os.PathLike[str],
        *,
        store: str | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        dev: bool = True,
        lease_ttl: float | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        command: Sequence[str] | None = None,
    ) -> None:
        """Start the server; `env` is added to the environment (see `clean_env`).

        `command` is the whole command line instead of the one the other options make
        (`store` is then only what it says). The server runs in a process group of its
        own, so that `kill()` ends it even when a launcher (`uv run`) started it.
        """
        self.cwd = Path(cwd).absolute()
        self.store = store if store is not None else f"sqlite:///{self.cwd / 'meetcore.db'}"
        self.env = clean_env(env)
        self.url = ""
        self.lines: list[str] = []
        base = [sys.executable, "-m", "meetcore.cli", "serve", "--host", host]
        base += ["--port", str(port), "--store", self.store, *(["--dev"] if dev else [])]
        if lease_ttl is not None:
            base += ["--lease-ttl", str(lease_ttl)]
        self.command = [*base, *args] if command is None else list(command)
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Keep every line of output; note the address once the server serves."""
        assert self.process.stdout is not None
        with self.process.stdout as stream:
            for line in stream:
                self.lines.append(line)
                found = _SERVING.search(line)
                if found and not self.url:
                    self.url = found.group(1)
                    self._ready.set()
        self._ready.set()  # the process is gone: stop waiting

    @property
    def ws_url(self) -> str:
        """The server's signaling WebSocket URL (`url` + `/ws`; wss:// for https://)."""
        return "ws" + self.url.removeprefix("http") + "/ws"

    @property
    def output(self) -> str:
        """Everything the server printed so far."""
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 30.0) -> Self:
        """Wait until the server serves (`url` is set); kill it and raise if it does not."""
        if not self._ready.wait(timeout) or not self.url:
            self.kill()
            raise RuntimeError(f"meetcore serve did not start:\n{self.output}")
        return self

    def check_alive(self) -> None:
        """Raise `RuntimeError` with the exit code and the output if the server has exited."""
        if self.process.poll() is not None:
            self._reader.join(5)
            code = self.process.returncode
            raise RuntimeError(f"meetcore serve died (exit {code}):\n{self.output}")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and return the exit code, waiting without blocking the event loop."""
        self._send(sig)
        try:
            with anyio.fail_after(timeout):
                while self.process.poll() is None:
                    await anyio.sleep(0.02)
        except TimeoutError:
            self._ignored(sig, timeout)
        await anyio.to_thread.run_sync(self._reader.join, 5)
        return self.process.returncode

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and return the exit code (blocking)."""
        self._send(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._ignored(sig, timeout)
        self._reader.join(5)
        return self.process.returncode

    def kill(self) -> None:
        """Kill the server and whatever it started, if they still run, and wait for it."""
        if self.process.returncode is None:  # not waited for: its id still names its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reader.join(5)

    def _send(self, sig: int) -> None:
        """Send `sig` unless the server has already exited."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def _ignored(self, sig: int, timeout: float) -> NoReturn:
        """Kill the server, which outlived `sig` by `timeout` seconds, and raise."""
        self.kill()
        raise RuntimeError(f"meetcore serve ignored signal {sig} for {timeout} s:\n{self.output}")

    def __enter__(self) -> Self:
        """Wait until the server serves."""
        return self.wait_ready()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Kill the server if it still runs."""
        self.kill()
