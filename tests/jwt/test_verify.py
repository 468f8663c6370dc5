"""verify_token, require_role and mint_token: VideoSDK's tokens in, hostile tokens out.

Tokens come from three places: payloads built by hand exactly as VideoSDK's guides
write them (signed here with HMAC-SHA256, as `jwt.sign` does), PyJWT called directly,
and `mint_token`. Every hostile token is refused with the code its row names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meetcore import ErrorCode, Principal, Rejected
from meetcore_jwt import (
    LEEWAY,
    MAX_TOKEN_BYTES,
    mint_token,
    parse_duration,
    require_role,
    verify_token,
)

API_KEY = "3f2a9c1e-videosdk-key"
SECRET = "b1c8e0f5d2a74e6b9c3d8f1a0e5b7c2d4f6a8e0c1b3d5f7a9e2c4b6d8f0a1c3e"
KEYS = {API_KEY: SECRET, "no-secret": ""}  # a key mapped to "" must verify nothing
#: 2024-06-01T10:00:00Z
NOW = 1_717_236_000
HEADER = {"alg": "HS256", "typ": "JWT"}


def b64(value: object) -> str:
    """base64url without padding of JSON (compact, as jsonwebtoken writes it) or of bytes."""
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: object, payload: object, secret: str | None = SECRET) -> str:
    """A token built by hand: `header.payload` signed with HMAC-SHA256 (no signature if None)."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    if secret is None:
        return f"{signing_input}."
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def claims(**fields: Any) -> dict[str, Any]:
    """A valid payload as VideoSDK's guides write it (`expiresIn: '120m'`), with changes;
    a field set to ... is left out."""
    payload: dict[str, Any] = {
        "apikey": API_KEY,
        "permissions": ["allow_join"],
        "version": 2,
        "iat": NOW,
        "exp": NOW + 120 * 60,
    }
    payload.update(fields)
    return {name: value for name, value in payload.items() if value is not ...}


def refused(token: str, **kwargs: Any) -> Rejected:
    kwargs.setdefault("keys", KEYS)
    kwargs.setdefault("now", NOW)
    with pytest.raises(Rejected) as caught:
        verify_token(token, **kwargs)
    assert "\n" not in caught.value.message
    return caught.value


# ---------------------------------------------------------------------------
# Tokens as VideoSDK's guides make them


def test_the_guides_example_payload_verbatim() -> None:
    # const payload = { apikey: API_KEY, permissions: [`allow_join`], version: 2,
    #   roomId: `2kyv-gzay-64pg`, participantId: `lxvdplwt`, roles: ['crawler', 'rtc'] };
    # jwt.sign(payload, SECRET, { expiresIn: '120m', algorithm: 'HS256' })
    payload = {
        "apikey": API_KEY,
        "permissions": ["allow_join"],
        "version": 2,
        "roomId": "2kyv-gzay-64pg",
        "participantId": "lxvdplwt",
        "roles": ["crawler", "rtc"],
        "iat": NOW,
        "exp": NOW + 7200,
    }
    token = forge(HEADER, payload)
    principal = verify_token(
        token, keys=KEYS, meeting_id="2kyv-gzay-64pg", participant_id="lxvdplwt", now=NOW
    )
    assert principal == Principal(
        api_key=API_KEY,
        permissions=("allow_join",),
        room_id="2kyv-gzay-64pg",
        participant_id="lxvdplwt",
        roles=("crawler", "rtc"),
        expires_at=(NOW + 7200) * 1000,
    )
    require_role(principal, "join")  # both roles: the token may do both
    require_role(principal, "rest")


def test_the_older_guides_crawler_token() -> None:
    # payload = { apikey, permissions: [`allow_join`], version: 2, roles: ['CRAWLER'] },
    # expiresIn: '10m'
    payload = {
        "apikey": API_KEY,
        "permissions": ["allow_join"],
        "version": 2,
        "roles": ["CRAWLER"],
        "iat": NOW,
        "exp": NOW + 600,
    }
    principal = verify_token(forge(HEADER, payload), keys=KEYS, now=NOW)
    assert principal.roles == ("crawler",)
    require_role(principal, "rest")
    with pytest.raises(Rejected) as caught:
        require_role(principal, "join")
    assert caught.value.code == ErrorCode.UNAUTHORIZED_ROLE


def test_a_version_1_token_with_apikey_and_permissions_only() -> None:
    payload = {"apikey": API_KEY, "permissions": ["allow_join", "allow_mod"], "exp": NOW + 60}
    principal = verify_token(forge(HEADER, payload), keys=KEYS, meeting_id="any-room", now=NOW)
    assert principal == Principal(
        api_key=API_KEY, permissions=("allow_join", "allow_mod"), expires_at=(NOW + 60) * 1000
    )


def test_a_token_from_pyjwt_directly() -> None:
    issued = datetime.fromtimestamp(NOW, UTC)
    token = jwt.encode(
        {
            "apikey": API_KEY,
            "permissions": ["ask_join"],
            "version": 2,
            "participantId": "guest-7",
            "jti": "2b0e4d1c",  # `jwtid`, which some examples set
            "iat": issued,
            "exp": issued + timedelta(hours=24),
        },
        SECRET,
        algorithm="HS256",
    )
    principal = verify_token(token, keys=KEYS, participant_id="guest-7", now=NOW)
    assert principal.permissions == ("ask_join",)
    assert principal.participant_id == "guest-7"
    assert principal.room_id is None
    assert principal.expires_at == (NOW + 86400) * 1000


def test_a_token_from_mint_token_is_videosdks_payload() -> None:
    token = mint_token(
        api_key=API_KEY,
        secret=SECRET,
        permissions=["allow_join"],
        expires_in="120m",
        room_id="2kyv-gzay-64pg",
        participant_id="lxvdplwt",
        roles=["rtc"],
        now=NOW,
    )
    assert jwt.get_unverified_header(token) == HEADER
    assert jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False}) == {
        "apikey": API_KEY,
        "permissions": ["allow_join"],
        "version": 2,
        "roomId": "2kyv-gzay-64pg",
        "participantId": "lxvdplwt",
        "roles": ["rtc"],
        "iat": NOW,
        "exp": NOW + 7200,
    }
    principal = verify_token(token, keys=KEYS, meeting_id="2kyv-gzay-64pg", now=NOW)
    assert principal.roles == ("rtc",)


def test_mint_token_defaults_are_the_server_sdks() -> None:
    token = mint_token(api_key=API_KEY, secret=SECRET, now=NOW)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert payload == {
        "apikey": API_KEY,
        "permissions": ["allow_join", "allow_mod"],
        "version": 2,
        "iat": NOW,
        "exp": NOW + 24 * 3600,
    }
    assert verify_token(token, keys=KEYS, now=NOW).permissions == ("allow_join", "allow_mod")


def test_mint_token_uses_the_clock_without_now() -> None:
    principal = verify_token(mint_token(api_key=API_KEY, secret=SECRET, expires_in=60), keys=KEYS)
    assert principal.api_key == API_KEY
    assert principal.expires_at is not None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"permissions": ["ask_join", "allow_join"]}, "4008 INVALID_PERMISSIONS: ask_join cannot"),
        ({"permissions": []}, "4008 INVALID_PERMISSIONS"),
        ({"permissions": ["allow_everything"]}, "unknown permission 'allow_everything'"),
        ({"permissions": "allow_join"}, "permissions is a sequence of names"),
        ({"roles": ["admin"]}, "unknown role 'admin'"),
        ({"roles": "rtc"}, "roles is a sequence of names"),
        ({"expires_in": "forever"}, "invalid duration 'forever'"),
        ({"expires_in": 0}, "a duration must be positive"),
        ({"expires_in": "999999999999d"}, "outlive the year 9999"),
        ({"api_key": ""}, "api_key must be a non-empty string"),
        ({"secret": ""}, "secret must be a non-empty string"),
        ({"room_id": ""}, "room_id must be a non-empty string"),
        ({"participant_id": ""}, "participant_id must be a non-empty string"),
    ],
)
def test_mint_token_refuses_what_verification_would(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        mint_token(**{"api_key": API_KEY, "secret": SECRET, "now": NOW, **arguments})
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("120m", 7200), ("24h", 86400), ("7d", 604800), ("3600", 3600), (" 2 h ", 7200),
     (90, 90)],
)  # fmt: skip
def test_parse_duration(text: int | str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "h", "1.5h", "-5m", "0", "0s", "1y", "2 days", "\uff11\uff12h", "1h30m", True, -1, 2.5],
)
def test_parse_duration_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(text)


# ---------------------------------------------------------------------------
# Time, bindings, permissions, roles


def test_leeway_forgives_a_little_clock_skew() -> None:
    assert LEEWAY == 10
    verify_token(forge(HEADER, claims(exp=NOW - 5)), keys=KEYS, now=NOW)
    verify_token(forge(HEADER, claims(nbf=NOW + 5)), keys=KEYS, now=NOW)
    assert refused(forge(HEADER, claims(exp=NOW - 10))).code == ErrorCode.INVALID_TOKEN
    assert refused(forge(HEADER, claims(nbf=NOW + 11))).code == ErrorCode.INVALID_TOKEN


def test_an_iat_in_the_future_is_no_reason_to_refuse() -> None:
    # exp and nbf say when a token is valid; a token server whose clock runs ahead
    # must not lock everyone out.
    principal = verify_token(forge(HEADER, claims(iat=NOW + 3600)), keys=KEYS, now=NOW)
    assert principal.api_key == API_KEY


def test_the_clock_is_used_without_now() -> None:
    expired = forge(HEADER, claims())  # expired in 2024
    with pytest.raises(Rejected, match="expired at 2024-06-01T12:00:00Z"):
        verify_token(expired, keys=KEYS)


def test_bindings_are_checked_only_against_what_is_asked() -> None:
    token = forge(HEADER, claims(roomId="room-1", participantId="ada"))
    principal = verify_token(token, keys=KEYS, now=NOW)  # no meeting asked: still bound
    assert (principal.room_id, principal.participant_id) == ("room-1", "ada")
    assert verify_token(token, keys=KEYS, meeting_id="room-1", participant_id="ada", now=NOW)
    other_room = refused(token, meeting_id="room-2")
    assert other_room.code == ErrorCode.UNAUTHORIZED_MEETING_ID
    assert "'room-1'" in other_room.message
    assert "'room-2'" in other_room.message
    assert refused(token, participant_id="bob").code == ErrorCode.UNAUTHORIZED_PARTICIPANT_ID
    unbound = forge(HEADER, claims())
    assert verify_token(unbound, keys=KEYS, meeting_id="room-9", participant_id="x", now=NOW)


def test_permissions_are_kept_in_order_without_duplicates() -> None:
    token = forge(HEADER, claims(permissions=["allow_mod", "allow_join", "allow_mod"]))
    assert verify_token(token, keys=KEYS, now=NOW).permissions == ("allow_mod", "allow_join")


def test_null_bindings_are_absent() -> None:
    token = forge(HEADER, claims(roomId=None, participantId=None, roles=None))
    principal = verify_token(token, keys=KEYS, meeting_id="m", participant_id="p", now=NOW)
    assert (principal.room_id, principal.participant_id, principal.roles) == (None, None, ())


@pytest.mark.parametrize(
    ("roles", "join", "rest"),
    [
        ((), True, True),
        (("crawler",), False, True),
        (("rtc",), True, False),
        (("crawler", "rtc"), True, True),
    ],
)
def test_require_role(roles: tuple[str, ...], join: bool, rest: bool) -> None:
    principal = Principal(api_key=API_KEY, permissions=("allow_join",), roles=roles)
    actions: list[tuple[Literal["join", "rest"], bool]] = [("join", join), ("rest", rest)]
    for action, allowed in actions:
        if allowed:
            require_role(principal, action)  # does not raise
        else:
            with pytest.raises(Rejected) as caught:
                require_role(principal, action)
            assert caught.value.code == ErrorCode.UNAUTHORIZED_ROLE


def test_require_role_knows_two_actions() -> None:
    with pytest.raises(ValueError, match="'join' or 'rest'"):
        require_role(Principal(api_key=API_KEY), "publish")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Hostile tokens

GOOD = forge(HEADER, claims())
HEAD, BODY, SIGNATURE = GOOD.split(".")
OTHER_SECRET = "another-secret-of-at-least-thirty-two-bytes!"


def _nested(depth: int) -> str:
    return b64(b'{"apikey":' + b"[" * depth + b"]" * depth + b"}")


HOSTILE: list[Any] = [
    # the algorithm
    pytest.param(forge({"alg": "none", "typ": "JWT"}, claims(), None), 4002, id="alg-none"),
    pytest.param(forge({"alg": "none"}, claims()), 4002, id="alg-none-with-signature"),
    pytest.param(forge({"alg": "None"}, claims(), None), 4002, id="alg-None"),
    pytest.param(forge({"alg": "hs256"}, claims()), 4002, id="alg-lowercase"),
    pytest.param(jwt.encode(claims(), SECRET, algorithm="HS512"), 4002, id="alg-HS512"),
    pytest.param(jwt.encode(claims(), SECRET, algorithm="HS384"), 4002, id="alg-HS384"),
    pytest.param(forge({"alg": "RS256", "typ": "JWT"}, claims()), 4002, id="alg-confusion-RS256"),
    pytest.param(forge({"alg": "ES256"}, claims()), 4002, id="alg-ES256"),
    pytest.param(forge({"typ": "JWT"}, claims()), 4002, id="alg-missing"),
    pytest.param(forge({"alg": ["HS256"]}, claims()), 4002, id="alg-a-list"),
    pytest.param(forge({"alg": "HS256", "crit": ["exp"]}, claims()), 4002, id="crit-unknown"),
    # the signature
    pytest.param(forge(HEADER, claims(), OTHER_SECRET), 4002, id="wrong-key"),
    pytest.param(f"{HEAD}.{b64(claims(permissions=['allow_mod']))}.{SIGNATURE}", 4002,
                 id="tampered-payload"),
    pytest.param(f"{HEAD}.{BODY}.", 4002, id="signature-empty"),
    pytest.param(f"{HEAD}.{BODY}.{SIGNATURE[:-4]}", 4002, id="signature-truncated"),
    pytest.param(f"{HEAD}.{BODY}.{SIGNATURE}A", 4002, id="signature-one-char-more"),
    pytest.param(f"{HEAD}.{BODY}.{forge(HEADER, claims(exp=NOW + 1)).split('.')[2]}", 4002,
                 id="signature-of-another-token"),
    # time
    pytest.param(forge(HEADER, claims(exp=NOW - 3600)), 4002, id="expired"),
    pytest.param(forge(HEADER, claims(exp=NOW - LEEWAY - 1)), 4002, id="expired-beyond-leeway"),
    pytest.param(forge(HEADER, claims(nbf=NOW + 3600)), 4002, id="not-yet-valid"),
    pytest.param(forge(HEADER, claims(exp=...)), 4002, id="exp-missing"),
    pytest.param(forge(HEADER, claims(exp=None)), 4002, id="exp-null"),
    pytest.param(forge(HEADER, claims(exp="tomorrow")), 4002, id="exp-a-string"),
    pytest.param(forge(HEADER, claims(exp=True)), 4002, id="exp-a-boolean"),
    pytest.param(forge(HEADER, claims(exp=10**30)), 4002, id="exp-beyond-year-9999"),
    pytest.param(forge(HEADER, claims(exp=-1)), 4002, id="exp-negative"),
    pytest.param(forge(HEADER, b'{"apikey":"' + API_KEY.encode() + b'","permissions":'
                       b'["allow_join"],"exp":NaN}'), 4002, id="exp-NaN"),
    pytest.param(forge(HEADER, claims(nbf="soon")), 4002, id="nbf-a-string"),
    pytest.param(forge(HEADER, claims(iat=[NOW])), 4002, id="iat-a-list"),
    # the API key
    pytest.param(forge(HEADER, claims(apikey=...)), 4001, id="apikey-missing"),
    pytest.param(forge(HEADER, claims(apikey=None)), 4001, id="apikey-null"),
    pytest.param(forge(HEADER, claims(apikey=12345)), 4001, id="apikey-a-number"),
    pytest.param(forge(HEADER, claims(apikey=[API_KEY])), 4001, id="apikey-a-list"),
    pytest.param(forge(HEADER, claims(apikey="")), 4001, id="apikey-empty"),
    pytest.param(forge(HEADER, claims(apikey="unknown-key")), 4001, id="apikey-unknown"),
    pytest.param(forge(HEADER, claims(apikey="unknown-key"), OTHER_SECRET), 4001,
                 id="apikey-unknown-own-secret"),
    pytest.param(forge(HEADER, claims(apikey="no-secret"), ""), 4001,
                 id="apikey-with-an-empty-secret"),
    # permissions
    pytest.param(forge(HEADER, claims(permissions=...)), 4008, id="permissions-missing"),
    pytest.param(forge(HEADER, claims(permissions="allow_join")), 4008, id="permissions-a-string"),
    pytest.param(forge(HEADER, claims(permissions=[])), 4008, id="permissions-empty"),
    pytest.param(forge(HEADER, claims(permissions=["allow_all"])), 4008, id="permissions-unknown"),
    pytest.param(forge(HEADER, claims(permissions=["ALLOW_JOIN"])), 4008, id="permissions-case"),
    pytest.param(forge(HEADER, claims(permissions=[1])), 4008, id="permissions-a-number"),
    pytest.param(forge(HEADER, claims(permissions={"allow_join": True})), 4008,
                 id="permissions-an-object"),
    pytest.param(forge(HEADER, claims(permissions=["ask_join", "allow_join"])), 4008,
                 id="ask_join-with-allow_join"),
    pytest.param(forge(HEADER, claims(permissions=["allow_mod", "ask_join"])), 4008,
                 id="ask_join-with-allow_mod"),
    # version and what it unlocks
    pytest.param(forge(HEADER, claims(version=..., roomId="room-1")), 4002, id="v1-with-roomId"),
    pytest.param(forge(HEADER, claims(version=..., participantId="ada")), 4002,
                 id="v1-with-participantId"),
    pytest.param(forge(HEADER, claims(version=..., roles=["rtc"])), 4002, id="v1-with-roles"),
    pytest.param(forge(HEADER, claims(version=1)), 4002, id="version-1"),
    pytest.param(forge(HEADER, claims(version="2")), 4002, id="version-a-string"),
    pytest.param(forge(HEADER, claims(version=True)), 4002, id="version-a-boolean"),
    pytest.param(forge(HEADER, claims(version=3)), 4002, id="version-3"),
    pytest.param(forge(HEADER, claims(roomId=42)), 4002, id="roomId-a-number"),
    pytest.param(forge(HEADER, claims(roomId="")), 4002, id="roomId-empty"),
    pytest.param(forge(HEADER, claims(participantId=["ada"])), 4002, id="participantId-a-list"),
    pytest.param(forge(HEADER, claims(roles="crawler")), 4002, id="roles-a-string"),
    pytest.param(forge(HEADER, claims(roles=["admin"])), 4002, id="roles-unknown"),
    pytest.param(forge(HEADER, claims(roles=[None])), 4002, id="roles-null-inside"),
    pytest.param(forge(HEADER, claims(roles="")), 4002, id="roles-empty-string"),
    pytest.param(forge(HEADER, claims(roles={})), 4002, id="roles-empty-object"),
    pytest.param(forge(HEADER, claims(jti=42)), 4002, id="jti-a-number"),
    # other registered claims meetcore is not told about
    pytest.param(forge(HEADER, claims(aud="some-other-service")), 4002, id="aud-foreign"),
    # bindings
    pytest.param(forge(HEADER, claims(roomId="room-1")), 4022, id="roomId-another-room"),
    pytest.param(forge(HEADER, claims(participantId="ada")), 4023,
                 id="participantId-another-participant"),
    # not a JWT at all
    pytest.param("", 4002, id="empty"),
    pytest.param("   ", 4002, id="blank"),
    pytest.param("garbage", 4002, id="garbage"),
    pytest.param("..", 4002, id="two-dots-empty-parts"),
    pytest.param(f"{HEAD}..{SIGNATURE}", 4002, id="payload-empty"),
    pytest.param(f".{BODY}.{SIGNATURE}", 4002, id="header-empty"),
    pytest.param(f"{GOOD}.{SIGNATURE}", 4002, id="four-parts"),
    pytest.param(f"{HEAD}.{BODY}.{SIGNATURE}.a.b", 4002, id="five-parts-like-jwe"),
    pytest.param(f"{HEAD} .{BODY}.{SIGNATURE}", 4002, id="space-inside"),
    pytest.param(GOOD + "." * 10, 4002, id="trailing-dots"),
    pytest.param("x" * 100_000, 4002, id="oversized-garbage"),
    pytest.param(forge(HEADER, claims(pad="x" * 100_000)), 4002, id="oversized-100kb-signed"),
    pytest.param("ä.ö.ü", 4002, id="non-ascii"),
    pytest.param(f"{HEAD}.{BODY}.{SIGNATURE[:-1]}é", 4002, id="non-ascii-signature"),
    pytest.param(f"{HEAD}.{BODY}.{SIGNATURE}\u200b", 4002, id="zero-width-space"),
    pytest.param("\ud800.\udfff.x", 4002, id="lone-surrogates"),
    pytest.param(forge(["alg", "HS256"], claims()), 4002, id="header-a-json-array"),
    pytest.param(forge("HS256", claims()), 4002, id="header-a-json-string"),
    pytest.param(forge(HEADER, [API_KEY]), 4002, id="payload-a-json-array"),
    pytest.param(forge(HEADER, 42), 4002, id="payload-a-json-number"),
    pytest.param(forge(HEADER, b"\xff\xfe not json"), 4002, id="payload-not-utf8"),
    pytest.param(f"{b64(b'{not json')}.{BODY}.{SIGNATURE}", 4002, id="header-not-json"),
    pytest.param(f"A.{BODY}.{SIGNATURE}", 4002, id="header-bad-base64-length"),
    pytest.param(f"{HEAD}.{_nested(3000)}.{SIGNATURE}", 4002, id="payload-nested-deeply"),
]  # fmt: skip


@pytest.mark.parametrize(("token", "code"), HOSTILE)
def test_hostile_tokens_are_refused_with_their_code(token: str, code: int) -> None:
    assert verify_token(GOOD, keys=KEYS, now=NOW)  # the table's baseline is good
    rejected = refused(token, meeting_id="room-2", participant_id="bob")
    assert rejected.code == code, rejected
    assert SECRET not in rejected.message


def test_a_token_that_is_not_a_string() -> None:
    assert refused(GOOD.encode()).code == ErrorCode.INVALID_TOKEN  # type: ignore[arg-type]


def test_messages_say_what_is_wrong() -> None:
    assert "algorithm must be HS256, not 'none'" in refused(HOSTILE[0].values[0]).message
    unknown = refused(forge(HEADER, claims(apikey="unknown-key")))
    assert "unknown apikey 'unknown-key'" in unknown.message
    assert "no API keys are configured" in refused(GOOD, keys={}).message
    assert "bad signature" in refused(forge(HEADER, claims(), OTHER_SECRET)).message
    assert "expired at 2024-06-01T12:00:00Z" in refused(GOOD, now=NOW + 3 * 3600).message
    assert 'need "version": 2' in refused(forge(HEADER, claims(version=..., roomId="r"))).message
    assert f"longer than {MAX_TOKEN_BYTES} bytes" in refused("x" * (MAX_TOKEN_BYTES + 1)).message


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (GOOD, "the token expired at 2024-06-01T12:00:00Z (it is 2024-06-01T13:00:00Z now)"),
        (forge(HEADER, claims(nbf=NOW + 4 * 3600, exp=NOW + 5 * 3600)),
         "the token is not valid before 2024-06-01T14:00:00Z (it is 2024-06-01T13:00:00Z now)"),
        (forge({"typ": "JWT"}, claims()),
         "the token's header names no algorithm (alg): it must be HS256"),
        (f"{HEAD}.{BODY[:10]}",
         "malformed token: a JWT is three base64url parts separated by dots, this one has 2 "
         "(was it cut short when copied?)"),
        ("garbage", "malformed token: a JWT is three base64url parts separated by dots, "
         "this one has 1"),
        (f"{GOOD}.{SIGNATURE}", "malformed token: a JWT is three base64url parts separated by "
         "dots, this one has 4"),
        (f"{HEAD}.{BODY}.{SIGNATURE[:-1]}\x1b", "malformed token: character "
         f"{len(GOOD)} is '\\x1b', which no JWT has (three base64url parts separated by dots)"),
        (f"{HEAD}..{SIGNATURE}", "malformed token: its header or payload is empty"),
        (f"{HEAD}.{BODY}.{SIGNATURE[:-4]}", "malformed token: Invalid crypto padding (a part of "
         "it is not base64url as a JWT encoder writes it: cut short or changed?)"),
        (forge(HEADER, claims(aud="x" * 500)),
         "the token has an aud claim: it is meant for another audience"),
    ],
)  # fmt: skip
def test_messages_say_what_is_wrong_in_the_users_words(token: str, message: str) -> None:
    assert refused(token, now=NOW + 3 * 3600).message == message


@pytest.mark.parametrize(("token", "code"), HOSTILE)
def test_messages_are_short_printable_lines(token: str, code: int) -> None:
    message = refused(token, meeting_id="room-2", participant_id="bob").message
    assert message.isprintable() and len(message) <= 200, message


def test_every_kind_of_hostile_token_is_in_the_table() -> None:
    ids = {param.id for param in HOSTILE}
    assert len(ids) == len(HOSTILE)
    assert {"alg-none", "alg-confusion-RS256", "wrong-key", "oversized-100kb-signed"} <= ids
    assert {param.values[1] for param in HOSTILE} == {4001, 4002, 4008, 4022, 4023}


# ---------------------------------------------------------------------------
# Properties: whatever comes in, the answer is a Principal or Rejected

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
CLAIM = st.sampled_from(
    ["apikey", "permissions", "version", "roomId", "participantId", "roles", "exp", "nbf",
     "iat", "aud", "iss", "sub", "jti"]
)  # fmt: skip
GOOD_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "apikey": st.just(API_KEY),
        "permissions": st.lists(st.sampled_from(["allow_join", "allow_mod", "ask_join"])),
        "version": st.just(2),
        "roomId": st.sampled_from(["room-1", "room-2"]),
        "participantId": st.sampled_from(["ada", "bob"]),
        "roles": st.lists(st.sampled_from(["crawler", "rtc", "CRAWLER"])),
        "exp": st.integers(NOW - 100, NOW + 100),
        "nbf": st.integers(NOW - 100, NOW + 100),
    },
)


def _answer(token: str, **kwargs: Any) -> Principal | Rejected:
    try:
        return verify_token(token, keys=KEYS, now=NOW, **kwargs)
    except Rejected as rejected:
        assert "\n" not in rejected.message
        assert SECRET not in rejected.message
        return rejected


@settings(max_examples=300)
@given(st.text())
def test_arbitrary_text_is_only_ever_rejected(text: str) -> None:
    assert isinstance(_answer(text), Rejected)


@settings(max_examples=300)
@given(st.from_regex(r"[A-Za-z0-9_=+/-]{0,40}\.[A-Za-z0-9_=+/-]{0,200}\.[A-Za-z0-9_-]{0,50}",
                     fullmatch=True))  # fmt: skip
def test_arbitrary_three_part_text_is_only_ever_rejected(text: str) -> None:
    assert isinstance(_answer(text), Rejected)


@settings(max_examples=300)
@given(
    header=st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "b64"]), JSON)
    | st.just(HEADER),
    payload=st.one_of(JSON, st.dictionaries(CLAIM, JSON)),
    good=GOOD_VALUES,
    meeting_id=st.none() | st.sampled_from(["room-1", "room-2"]),
)
def test_signed_arbitrary_claims_give_a_principal_or_rejected(
    header: Any, payload: Any, good: dict[str, Any], meeting_id: str | None
) -> None:
    if isinstance(payload, dict):
        payload = {**payload, **good}
    answer = _answer(forge(header, payload), meeting_id=meeting_id)
    if isinstance(answer, Principal):
        assert answer.api_key == API_KEY
        assert answer.permissions
        assert meeting_id is None or answer.room_id in (None, meeting_id)
