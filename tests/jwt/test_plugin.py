"""The plugin: found through its entry point, and the auth hook as the server calls it."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import meetcore
import meetcore_jwt
import meetcore_jwt.plugin
from meetcore import Engine, ErrorCode, Principal, Rejected
from meetcore_jwt import JWTAuth, mint_token

KEY = "plugin-key"
SECRET = "plugin-secret-which-is-long-enough-for-hs256"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEETCORE_API_KEY", KEY)
    monkeypatch.setenv("MEETCORE_API_SECRET", SECRET)


def test_the_entry_point_names_the_plugin_module() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="meetcore") if e.name == "jwt"]
    assert entry.value == "meetcore_jwt.plugin"
    assert entry.load() is meetcore_jwt.plugin


def test_the_plugin_manager_loads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEETCORE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pm = meetcore.plugin_manager()
    assert pm.get_plugin("jwt") is meetcore_jwt.plugin
    hooks = {caller.name for caller in pm.get_hookcallers(meetcore_jwt.plugin) or ()}
    assert hooks == {"meetcore_authenticate", "meetcore_dev_token", "meetcore_register_commands"}


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("scheme", ["", "Bearer ", "bearer ", "  Bearer   "])
def test_the_hook_takes_a_raw_or_bearer_token(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEETCORE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pm = meetcore.plugin_manager()
    token = mint_token(api_key=KEY, secret=SECRET, room_id="abc-def-ghi")
    principal = pm.hook.meetcore_authenticate(
        credential=f"{scheme}{token}", meeting_id="abc-def-ghi"
    )
    assert isinstance(principal, Principal)
    assert (principal.api_key, principal.room_id) == (KEY, "abc-def-ghi")


@pytest.mark.usefixtures("configured")
def test_the_hook_refuses_a_bad_jwt() -> None:
    pm = meetcore.plugin_manager([meetcore_jwt.plugin], autoload=False)
    token = mint_token(api_key=KEY, secret=SECRET, participant_id="ada")
    with pytest.raises(Rejected) as caught:
        pm.hook.meetcore_authenticate(credential=f"Bearer {token}x", meeting_id=None)
    assert caught.value.code == ErrorCode.INVALID_TOKEN
    other = mint_token(api_key="someone-else", secret=SECRET)
    with pytest.raises(Rejected) as caught:
        pm.hook.meetcore_authenticate(credential=other, meeting_id=None)
    assert caught.value.code == ErrorCode.INVALID_API_KEY


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    "credential",
    ["", "key:k-1", "Bearer", "Bearer abc", "Basic dXNlcjpwYXNz", "Basic a.b.c", "a.b", "a.b.c.d"],
)
def test_what_is_no_jwt_is_left_to_other_plugins(credential: str) -> None:
    assert meetcore_jwt.plugin.meetcore_authenticate(credential=credential, meeting_id=None) is None


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    "credential",
    ["eyJhbGciOiJIUzI1NiJ9", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJhcGlrZXkiOiJw", "eyJ.a.b.c"],
)
def test_a_jwt_cut_short_or_garbled_is_still_refused_by_it(credential: str) -> None:
    """It starts as every JWT does: this plugin says what is wrong, rather than leaving
    the server to say that no plugin recognizes it."""
    with pytest.raises(Rejected) as caught:
        meetcore_jwt.plugin.meetcore_authenticate(credential=credential, meeting_id=None)
    assert caught.value.code == ErrorCode.INVALID_TOKEN
    assert caught.value.message.startswith("malformed token: a JWT is three base64url parts")


def test_what_is_no_jwt_is_left_to_others_even_with_a_broken_keys_file(tmp_path: Path) -> None:
    (tmp_path / "meetcore-keys.json").write_text("{broken")
    assert meetcore_jwt.plugin.meetcore_authenticate(credential="key:k-1", meeting_id=None) is None
    with pytest.raises(meetcore_jwt.KeysError):
        meetcore_jwt.plugin.meetcore_authenticate(credential="a.b.c", meeting_id=None)


@given(st.text())
def test_the_hook_answers_none_a_principal_or_rejected(credential: str) -> None:
    auth = JWTAuth({KEY: SECRET})
    try:
        answer = auth.meetcore_authenticate(credential=credential, meeting_id="abc-def-ghi")
    except Rejected:
        return
    assert answer is None or isinstance(answer, Principal)


def test_jwt_auth_with_keys_in_code() -> None:
    token = mint_token(api_key=KEY, secret=SECRET, permissions=["ask_join"])

    async def main() -> Principal:
        async with Engine.open(plugins=[JWTAuth({KEY: SECRET})], autoload=False) as engine:
            principal: Principal = engine.plugins.hook.meetcore_authenticate(
                credential=token, meeting_id="abc-def-ghi"
            )
            return principal

    principal = anyio.run(main)
    assert principal.permissions == ("ask_join",)


def test_jwt_auth_never_shows_its_secrets() -> None:
    auth = JWTAuth({KEY: SECRET, "second": "another-secret"})
    assert repr(auth) == "JWTAuth(api_keys=['plugin-key', 'second'])"
    assert SECRET not in repr(auth)


@pytest.mark.parametrize("keys", [{"": SECRET}, {KEY: ""}, {KEY: 42}])
def test_jwt_auth_refuses_empty_keys(keys: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="non-empty string") as caught:
        JWTAuth(keys)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


def test_the_public_api() -> None:
    assert sorted(meetcore_jwt.__all__) == [
        "ALGORITHM",
        "DEFAULT_KEYS_FILE",
        "JWTAuth",
        "KeysError",
        "LEEWAY",
        "MAX_TOKEN_BYTES",
        "PERMISSIONS",
        "ROLES",
        "ensure_dev_keys",
        "load_keys",
        "mint_token",
        "parse_duration",
        "require_role",
        "verify_token",
    ]
    assert issubclass(meetcore_jwt.KeysError, ValueError)
