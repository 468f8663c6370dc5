"""A secret never shows: not in an error, a log line, the CLI's output or its help.

One unusual secret is used everywhere; every failure that can be provoked with it is
provoked, everything written is gathered, and the secret is looked for in all of it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import meetcore
import meetcore_jwt.plugin
from meetcore import Rejected
from meetcore.cli import build_cli
from meetcore.keys import KeyRing
from meetcore_jwt import KeysError, load_keys, mint_token, verify_token

KEY = "leak-test-key"
SECRET = "Zq-UNUSUAL-s3cret-\u2206-7b5a3d9f-$(whoami)-'quoted'-\"double\"-end"
CORE = "UNUSUAL-s3cret"  # what would show of it even cut or quoted differently
OTHER = "the-other-secret-that-is-long-enough-0000"
NOW = 1_717_236_000


def _verify_failures() -> list[str]:
    good = mint_token(api_key=KEY, secret=SECRET, room_id="room-1", participant_id="ada", now=NOW)
    head, body, signature = good.split(".")
    attempts: list[Callable[[], object]] = [
        lambda: verify_token(good, keys={KEY: SECRET}, meeting_id="room-2", now=NOW),
        lambda: verify_token(good, keys={KEY: SECRET}, participant_id="bob", now=NOW),
        lambda: verify_token(good, keys={KEY: SECRET}, now=NOW + 10**6),
        lambda: verify_token(good, keys={KEY: OTHER}, now=NOW),
        lambda: verify_token(mint_token(api_key=KEY, secret=OTHER), keys={KEY: SECRET}),
        lambda: verify_token(good, keys={"someone-else": SECRET}, now=NOW),
        lambda: verify_token(f"{head}.{body}x.{signature}", keys={KEY: SECRET}, now=NOW),
        lambda: verify_token(f"{head}.{body}.", keys={KEY: SECRET}, now=NOW),
        lambda: verify_token(good + "x" * 9000, keys={KEY: SECRET}, now=NOW),
        lambda: verify_token(SECRET, keys={KEY: SECRET}, now=NOW),
        lambda: verify_token(f"{head}.{body}.{SECRET}", keys={KEY: SECRET}, now=NOW),
    ]
    messages = []
    for attempt in attempts:
        with pytest.raises(Rejected) as caught:
            attempt()
        messages += [str(caught.value), repr(caught.value), caught.value.message]
    return messages


def _mint_failures() -> list[str]:
    messages = []
    for changes in (
        {"permissions": ["ask_join", "allow_mod"]},
        {"permissions": ["allow_all"]},
        {"roles": ["admin"]},
        {"expires_in": "never"},
        {"room_id": ""},
    ):
        with pytest.raises(ValueError) as caught:  # noqa: PT011 (every message is checked)
            mint_token(api_key=KEY, secret=SECRET, **changes)
        messages.append(str(caught.value))
    return messages


def _keys_failures(tmp_path: Path) -> list[str]:
    path = tmp_path / "keys.json"
    messages = []
    for content in (
        f'{{"{KEY}": "{SECRET}",}}',
        f'{{"{KEY}": "{SECRET}"',
        f'["{SECRET}"]',
        f'{{"": "{SECRET}"}}',
        json.dumps({KEY: [SECRET]}),
    ):
        path.write_text(content)
        with pytest.raises(KeysError) as caught:
            load_keys({"MEETCORE_KEYS_FILE": str(path)})
        messages.append(str(caught.value))
    path.write_text(json.dumps({KEY: OTHER}))
    with pytest.raises(KeysError) as caught:
        load_keys(
            {
                "MEETCORE_KEYS_FILE": str(path),
                "MEETCORE_API_KEY": KEY,
                "MEETCORE_API_SECRET": SECRET,
            }
        )
    messages.append(str(caught.value))
    ring = KeyRing({"MEETCORE_KEYS_FILE": str(path)})
    ring.get()
    path.write_text(f'{{"{KEY}": "{SECRET}", "broken"')
    ring.get()  # logs a warning, checked through caplog
    return messages


def _cli_outputs() -> list[str]:
    cli = build_cli(meetcore.plugin_manager([meetcore_jwt.plugin], autoload=False))
    env = {"MEETCORE_API_KEY": KEY, "MEETCORE_API_SECRET": SECRET}
    flags = ["--api-key", KEY, "--secret", SECRET]
    outputs = []
    for args, environment in (
        (["token"], env),
        (["token", *flags], {}),
        (["token", "--help"], env),
        (["token", "-p", "ask_join,allow_join"], env),
        (["token", *flags, "-p", "ask_join,allow_join"], {}),
        (["token", *flags, "--roles", "admin"], {}),
        (["token", *flags, "--expires-in", "soon"], {}),
        (["token", *flags, "--room-id", ""], {}),
        (["token", "--api-key", "nobody"], env),
        (["token", "--secret", SECRET], {}),
        (["token"], {"MEETCORE_API_SECRET": SECRET}),
        (["--help"], env),
    ):
        result = CliRunner().invoke(cli, args, env=environment, prog_name="meetcore")
        assert result.exception is None or isinstance(result.exception, SystemExit)
        outputs += [result.stdout, result.stderr]
    return outputs


def _console_script_outputs(tmp_path: Path) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEETCORE_")}
    meetcore_script = str(Path(sys.executable).parent / "meetcore")
    outputs = []
    for args, env in (
        (["token"], {"MEETCORE_API_KEY": KEY, "MEETCORE_API_SECRET": SECRET}),
        (["token", "--api-key", KEY, "--secret", SECRET, "-p", "bogus"], {}),
        (["token"], {"MEETCORE_API_KEY": KEY}),
    ):
        done = subprocess.run(
            [meetcore_script, *args],
            capture_output=True,
            text=True,
            env={**clean, **env},
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in done.stderr
        outputs += [done.stdout, done.stderr]
    return outputs


def test_the_secret_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        written = [
            *_verify_failures(),
            *_mint_failures(),
            *_keys_failures(tmp_path),
            *_cli_outputs(),
            *_console_script_outputs(tmp_path),
        ]
    written.append(caplog.text)
    assert "keeping the keys loaded before" in caplog.text  # the warning was provoked
    assert sum("error" in text for text in written) >= 10  # failures were provoked
    leaks = [text for text in written if SECRET in text or CORE in text]
    assert leaks == []
