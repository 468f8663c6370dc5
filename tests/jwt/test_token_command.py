"""`meetcore token`: through click's CliRunner, and as the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner, Result

import meetcore
import meetcore_jwt.plugin
from meetcore import ErrorCode, Rejected
from meetcore.cli import build_cli
from meetcore_jwt import DEFAULT_KEYS_FILE, ensure_dev_keys, verify_token

KEY = "cli-key"
SECRET = "cli-secret-which-is-long-enough-for-hs256"
ENV = {"MEETCORE_API_KEY": KEY, "MEETCORE_API_SECRET": SECRET}
SCRIPT = Path(sys.executable).parent / "meetcore"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    cli = build_cli(meetcore.plugin_manager([meetcore_jwt.plugin], autoload=False))
    return CliRunner().invoke(cli, ["token", *args], env=env, prog_name="meetcore")


def minted(result: Result) -> dict[str, Any]:
    """The payload of the token the command printed, alone on stdout, after checking it."""
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    token = result.stdout.removesuffix("\n")
    assert result.stdout == f"{token}\n"
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    assert verify_token(token, keys={KEY: SECRET}).api_key == KEY
    return payload


def failed(result: Result) -> str:
    """The one line `meetcore: error: ...` of a refused command (exit 2, no output)."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("meetcore: error: ")
    return line.removeprefix("meetcore: error: ")


def test_the_defaults_from_the_environment() -> None:
    payload = minted(run(env=ENV))
    assert payload["apikey"] == KEY
    assert payload["permissions"] == ["allow_join", "allow_mod"]
    assert payload["version"] == 2
    assert payload["exp"] - payload["iat"] == 24 * 3600
    assert set(payload) == {"apikey", "permissions", "version", "iat", "exp"}


def test_every_option() -> None:
    payload = minted(
        run(
            "--permissions", "allow_join",
            "--room-id", "2kyv-gzay-64pg",
            "--participant-id", "lxvdplwt",
            "--roles", "crawler",
            "--expires-in", "120m",
            env=ENV,
        )
    )  # fmt: skip
    assert payload["permissions"] == ["allow_join"]
    assert payload["roomId"] == "2kyv-gzay-64pg"
    assert payload["participantId"] == "lxvdplwt"
    assert payload["roles"] == ["crawler"]
    assert payload["exp"] - payload["iat"] == 7200


@pytest.mark.parametrize(
    ("args", "permissions"),
    [
        (["-p", "allow_join,allow_mod"], ["allow_join", "allow_mod"]),
        (["-p", "allow_mod", "-p", "allow_join"], ["allow_mod", "allow_join"]),
        (["--permissions", " allow_join , allow_mod ,"], ["allow_join", "allow_mod"]),
        (["--permissions", "ask_join"], ["ask_join"]),
    ],
)
def test_permissions_comma_separated_or_repeated(args: list[str], permissions: list[str]) -> None:
    assert minted(run(*args, env=ENV))["permissions"] == permissions


def test_roles_comma_separated_or_repeated() -> None:
    assert minted(run("--roles", "crawler,rtc", env=ENV))["roles"] == ["crawler", "rtc"]
    assert minted(run("--roles", "rtc", "--roles", "crawler", env=ENV))["roles"] == [
        "rtc",
        "crawler",
    ]


def test_the_first_key_of_the_keys_file(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_KEYS_FILE).write_text(json.dumps({KEY: SECRET, "other": "x" * 40}))
    assert minted(run())["apikey"] == KEY


def test_another_key_of_the_keys_file_by_name(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_KEYS_FILE).write_text(json.dumps({"first": "y" * 40, KEY: SECRET}))
    assert minted(run("--api-key", KEY))["apikey"] == KEY


def test_key_and_secret_as_flags() -> None:
    assert minted(run("--api-key", KEY, "--secret", SECRET))["apikey"] == KEY
    assert minted(run("--secret", SECRET, env={"MEETCORE_API_KEY": KEY}))["apikey"] == KEY


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "no API key is configured: set MEETCORE_API_KEY and MEETCORE_API_SECRET"),
        (["--api-key", "nobody"], ENV, "no secret for API key 'nobody'"),
        (["--secret", SECRET], {}, "--secret needs --api-key (or MEETCORE_API_KEY)"),
        ([], {"MEETCORE_API_KEY": KEY}, "MEETCORE_API_KEY is set but MEETCORE_API_SECRET is not"),
        (["-p", "ask_join,allow_join"], ENV,
         "'--permissions': 4008 INVALID_PERMISSIONS: ask_join cannot be combined"),
        (["-p", "allow_everything"], ENV, "unknown permission 'allow_everything'"),
        (["--roles", "admin"], ENV, "Invalid value for '--roles': unknown role 'admin'"),
        (["--expires-in", "soon"], ENV, "'--expires-in': invalid duration 'soon'"),
        (["--expires-in", "0"], ENV, "a duration must be positive"),
        (["--room-id", ""], ENV, "room_id must be a non-empty string"),
        (["--api-key", KEY, "--secret", ""], {}, "secret must be a non-empty string"),
        (["--nope"], ENV, "--nope"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_exit_2_and_never_the_secret(
    args: list[str], env: dict[str, str], message: str
) -> None:
    line = failed(run(*args, env=env))
    assert message in line
    assert SECRET not in line


def test_a_malformed_keys_file_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_KEYS_FILE).write_text('{"' + KEY + '": "' + SECRET + '",}')
    line = failed(run())
    assert line.startswith("keys file meetcore-keys.json is not valid JSON")
    assert SECRET not in line


def test_the_token_authenticates_through_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    token = run("--room-id", "abc-def-ghi", env=ENV).stdout.strip()
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    pm = meetcore.plugin_manager([meetcore_jwt.plugin], autoload=False)
    principal = pm.hook.meetcore_authenticate(credential=token, meeting_id="abc-def-ghi")
    assert principal.room_id == "abc-def-ghi"
    with pytest.raises(Rejected) as caught:
        pm.hook.meetcore_authenticate(credential=token, meeting_id="xyz-xyz-xyz")
    assert caught.value.code == ErrorCode.UNAUTHORIZED_MEETING_ID


# ---------------------------------------------------------------------------
# The real console script: the entry point wires the plugin in


def script(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEETCORE_")}
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_the_console_script_mints_with_environment_keys(tmp_path: Path) -> None:
    done = script("token", "--room-id", "abc-def-ghi", "--expires-in", "2h", env=ENV, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    principal = verify_token(done.stdout.strip(), keys={KEY: SECRET}, meeting_id="abc-def-ghi")
    assert principal.room_id == "abc-def-ghi"
    assert principal.permissions == ("allow_join", "allow_mod")


def test_the_console_script_after_a_dev_key_file_is_made(tmp_path: Path) -> None:
    api_key, secret = ensure_dev_keys(tmp_path / DEFAULT_KEYS_FILE)
    done = script("token", env={}, cwd=tmp_path)  # zero configuration
    assert done.returncode == 0, done.stderr
    assert verify_token(done.stdout.strip(), keys={api_key: secret}).api_key == api_key


def test_the_console_script_refuses_in_one_line(tmp_path: Path) -> None:
    done = script("token", "-p", "ask_join,allow_mod", env=ENV, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "4008 INVALID_PERMISSIONS" in done.stderr
    assert SECRET not in done.stderr


def test_the_console_script_lists_the_plugin(tmp_path: Path) -> None:
    done = script("plugins", "--json", env={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = [row for row in json.loads(done.stdout) if row["name"] == "jwt"]
    assert row["distribution"]["name"] == "meetcore-jwt"
    assert row["hooks"] == [
        "meetcore_authenticate",
        "meetcore_dev_token",
        "meetcore_register_commands",
    ]
