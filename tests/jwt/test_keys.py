"""Keys from the environment and the keys file; the dev key file; rotation without restart."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import uuid
from pathlib import Path

import pytest

import meetcore_jwt.plugin
from meetcore import ErrorCode, Rejected
from meetcore.keys import KeyRing
from meetcore_jwt import DEFAULT_KEYS_FILE, KeysError, ensure_dev_keys, load_keys, mint_token

SECRET_A = "secret-of-key-a-which-is-long-enough-000"
SECRET_B = "secret-of-key-b-which-is-long-enough-111"


def write(path: Path, keys: object) -> Path:
    path.write_text(keys if isinstance(keys, str) else json.dumps(keys))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------
# load_keys


def test_no_configuration_is_no_keys() -> None:
    assert DEFAULT_KEYS_FILE == "meetcore-keys.json"
    assert load_keys() == {}
    assert load_keys({}) == {}


def test_one_key_from_the_environment() -> None:
    env = {"MEETCORE_API_KEY": "key-a", "MEETCORE_API_SECRET": SECRET_A}
    assert load_keys(env) == {"key-a": SECRET_A}


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEETCORE_API_KEY", "key-a")
    monkeypatch.setenv("MEETCORE_API_SECRET", SECRET_A)
    assert load_keys() == {"key-a": SECRET_A}


def test_the_default_keys_file_in_the_current_directory(tmp_path: Path) -> None:
    write(tmp_path / DEFAULT_KEYS_FILE, {"key-a": SECRET_A, "key-b": SECRET_B})
    assert load_keys({}) == {"key-a": SECRET_A, "key-b": SECRET_B}


def test_the_environment_and_a_named_file_merge_environment_first(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.json", {"key-b": SECRET_B, "key-a": SECRET_A})
    env = {
        "MEETCORE_API_KEY": "key-a",
        "MEETCORE_API_SECRET": SECRET_A,
        "MEETCORE_KEYS_FILE": str(path),
    }
    assert list(load_keys(env).items()) == [("key-a", SECRET_A), ("key-b", SECRET_B)]


def test_an_empty_file_holds_no_keys(tmp_path: Path) -> None:
    write(tmp_path / DEFAULT_KEYS_FILE, "\n")
    assert load_keys({}) == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEETCORE_API_KEY": "key-a"}, "MEETCORE_API_KEY is set but MEETCORE_API_SECRET is not"),
        ({"MEETCORE_API_SECRET": SECRET_A}, "MEETCORE_API_SECRET is set but MEETCORE_API_KEY"),
        ({"MEETCORE_KEYS_FILE": "missing.json"}, "keys file missing.json (MEETCORE_KEYS_FILE)"),
        (
            {"MEETCORE_API_KEY": "key-a", "MEETCORE_API_SECRET": SECRET_B},
            "API key 'key-a' has one secret in MEETCORE_API_SECRET, another in",
        ),
    ],
)
def test_configuration_mistakes(tmp_path: Path, env: dict[str, str], message: str) -> None:
    write(tmp_path / DEFAULT_KEYS_FILE, {"key-a": SECRET_A})
    with pytest.raises(KeysError) as caught:
        load_keys(env)
    assert message in str(caught.value)
    assert SECRET_A not in str(caught.value)
    assert SECRET_B not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"key-a": "' + SECRET_A + '",}', "is not valid JSON (Expecting property name"),
        ('{"key-a": "' + SECRET_A, "is not valid JSON"),
        ('["' + SECRET_A + '"]', 'must hold a JSON object {"<api key>": "<secret>", ...}'),
        ('{"key-a": 12345}', "the secret of API key 'key-a' must be a non-empty string"),
        ('{"key-a": ""}', "the secret of API key 'key-a' must be a non-empty string"),
        ('{"key-a": ["' + SECRET_A + '"]}', "the secret of API key 'key-a'"),
        ('{"": "' + SECRET_A + '"}', "has an empty API key"),
        ("[" * 100_000, "is not valid JSON"),
        (b"\xff\xfe" + SECRET_A.encode(), "is not UTF-8 text"),
    ],
)
def test_a_malformed_keys_file_is_one_line_without_secrets(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / DEFAULT_KEYS_FILE
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(KeysError) as caught:
        load_keys({})
    text = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message in text
    assert text.startswith(f"keys file {DEFAULT_KEYS_FILE}")
    assert "\n" not in text
    assert SECRET_A not in text


def test_an_unreadable_keys_file(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_KEYS_FILE).mkdir()
    with pytest.raises(KeysError, match=r"cannot read keys file meetcore-keys\.json"):
        load_keys({})


# ---------------------------------------------------------------------------
# ensure_dev_keys


def test_ensure_dev_keys_creates_a_private_file(tmp_path: Path) -> None:
    old = os.umask(0)  # even when files would be world-writable by default
    try:
        api_key, secret = ensure_dev_keys()
    finally:
        os.umask(old)
    path = tmp_path / DEFAULT_KEYS_FILE
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == {api_key: secret}
    assert uuid.UUID(api_key)
    assert len(secret) >= 43
    assert load_keys({}) == {api_key: secret}
    assert ensure_dev_keys() == (api_key, secret)  # the second start finds it
    assert ensure_dev_keys(path) == (api_key, secret)
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_KEYS_FILE]  # no temporary left


def test_ensure_dev_keys_makes_a_new_key_each_time_it_creates_a_file(tmp_path: Path) -> None:
    first = ensure_dev_keys(tmp_path / "one.json")
    second = ensure_dev_keys(tmp_path / "two.json")
    assert first[0] != second[0]
    assert first[1] != second[1]


def test_ensure_dev_keys_follows_meetcore_keys_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEETCORE_KEYS_FILE", str(tmp_path / "configured.json"))
    api_key, secret = ensure_dev_keys()
    assert load_keys() == {api_key: secret}
    assert not (tmp_path / DEFAULT_KEYS_FILE).exists()


def test_ensure_dev_keys_returns_the_first_existing_key_untouched(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", {"key-a": SECRET_A, "key-b": SECRET_B})
    before = path.read_bytes()
    assert ensure_dev_keys(path) == ("key-a", SECRET_A)
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", ["{}", "", "  \n"])
def test_ensure_dev_keys_fills_a_file_without_keys(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "keys.json", content)
    path.chmod(0o644)
    api_key, secret = ensure_dev_keys(path)
    assert json.loads(path.read_text()) == {api_key: secret}
    assert mode(path) == 0o600


def test_ensure_dev_keys_never_overwrites_a_malformed_file(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", '{"key-a": "' + SECRET_A + '"')
    with pytest.raises(KeysError, match="is not valid JSON"):
        ensure_dev_keys(path)
    assert path.read_text() == '{"key-a": "' + SECRET_A + '"'


def test_ensure_dev_keys_where_no_file_can_be_written(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match=r"cannot write keys file .*missing.*keys\.json"):
        ensure_dev_keys(tmp_path / "missing" / "keys.json")


def test_servers_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    start = threading.Barrier(8)
    results: list[tuple[str, str]] = []

    def server() -> None:
        start.wait()
        results.append(ensure_dev_keys(path))

    threads = [threading.Thread(target=server) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1
    assert load_keys({"MEETCORE_KEYS_FILE": str(path)}) == dict(results[:1])


# ---------------------------------------------------------------------------
# Rotation: the plugin reads the file again when it changes


def _authenticate(token: str) -> object:
    return meetcore_jwt.plugin.meetcore_authenticate(credential=token, meeting_id=None)


def test_rotation_two_keys_then_one(tmp_path: Path) -> None:
    path = write(tmp_path / DEFAULT_KEYS_FILE, {"key-a": SECRET_A, "key-b": SECRET_B})
    old = mint_token(api_key="key-a", secret=SECRET_A)
    new = mint_token(api_key="key-b", secret=SECRET_B)
    assert getattr(_authenticate(old), "api_key", None) == "key-a"
    assert getattr(_authenticate(new), "api_key", None) == "key-b"
    write(path, {"key-b": SECRET_B})  # key-a retired: no restart
    with pytest.raises(Rejected) as caught:
        _authenticate(old)
    assert caught.value.code == ErrorCode.INVALID_API_KEY
    assert getattr(_authenticate(new), "api_key", None) == "key-b"


def test_a_new_key_in_the_environment_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    token = mint_token(api_key="key-a", secret=SECRET_A)
    with pytest.raises(Rejected):
        _authenticate(token)
    monkeypatch.setenv("MEETCORE_API_KEY", "key-a")
    monkeypatch.setenv("MEETCORE_API_SECRET", SECRET_A)
    assert getattr(_authenticate(token), "api_key", None) == "key-a"


def test_a_file_broken_after_a_good_read_keeps_the_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / DEFAULT_KEYS_FILE, {"key-a": SECRET_A})
    ring = KeyRing({})
    assert ring.get() == {"key-a": SECRET_A}
    write(path, '{"key-a": "' + SECRET_A + '", "key-b"')  # a half-saved edit
    with caplog.at_level(logging.WARNING, logger="meetcore.keys"):
        assert ring.get() == {"key-a": SECRET_A}
        assert ring.get() == {"key-a": SECRET_A}
    assert len(caplog.records) == 1  # once per change of the file
    assert "keeping the keys loaded before" in caplog.text
    assert SECRET_A not in caplog.text
    write(path, {"key-a": SECRET_A, "key-b": SECRET_B})
    assert ring.get() == {"key-a": SECRET_A, "key-b": SECRET_B}


def test_a_file_broken_from_the_start_raises(tmp_path: Path) -> None:
    write(tmp_path / DEFAULT_KEYS_FILE, "[")
    with pytest.raises(KeysError):
        KeyRing({}).get()
