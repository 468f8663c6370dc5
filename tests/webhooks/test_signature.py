"""`meetcore_webhooks.verify`: genuine bodies pass; anything else fails with one clear line."""

from __future__ import annotations

import pytest

from meetcore_webhooks import InvalidSignature, sign, verify

SECRET = "s3cret"
BODY = b'{"webhookType":"participant-joined","webhookId":"m:3:participant-joined","data":{}}'
T = 1_717_236_000


def test_a_signed_body_verifies() -> None:
    verify(BODY, sign(BODY, secret=SECRET, timestamp=T), secret=SECRET, now=T + 5)


def test_the_header_is_stripe_like() -> None:
    header = sign(BODY, secret=SECRET, timestamp=T)
    t, v1 = header.split(",")
    assert t == f"t={T}"
    assert v1.startswith("v1=")
    assert len(v1) == 3 + 64


def test_order_spaces_and_extra_schemes_are_fine() -> None:
    v1 = sign(BODY, secret=SECRET, timestamp=T).split(",")[1]
    verify(BODY, f"{v1}, v0=whatever , t={T}", secret=SECRET, now=T)


def test_one_matching_signature_of_several_is_enough() -> None:
    good = sign(BODY, secret=SECRET, timestamp=T).split(",")[1]
    verify(BODY, f"t={T},v1={'0' * 64},{good}", secret=SECRET, now=T)


def test_bytearray_and_memoryview_bodies() -> None:
    header = sign(BODY, secret=SECRET, timestamp=T)
    verify(bytearray(BODY), header, secret=SECRET, now=T)
    verify(memoryview(BODY), header, secret=SECRET, now=T)


@pytest.mark.parametrize(
    ("body", "secret"),
    [(BODY + b" ", SECRET), (BODY.replace(b"3", b"4"), SECRET), (BODY, "another"), (b"", SECRET)],
    ids=["appended", "changed", "other-secret", "empty"],
)
def test_a_changed_body_or_another_secret_fails(body: bytes, secret: str) -> None:
    header = sign(BODY, secret=SECRET, timestamp=T)
    with pytest.raises(InvalidSignature, match="does not match the body"):
        verify(body, header, secret=secret, now=T)


def test_a_changed_timestamp_fails() -> None:
    v1 = sign(BODY, secret=SECRET, timestamp=T).split(",")[1]
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(BODY, f"t={T + 1},{v1}", secret=SECRET, now=T)


def test_an_old_signature_is_a_replay() -> None:
    header = sign(BODY, secret=SECRET, timestamp=T)
    verify(BODY, header, secret=SECRET, now=T + 300)
    with pytest.raises(InvalidSignature, match=r"301 s old, more than the 300 s tolerated"):
        verify(BODY, header, secret=SECRET, now=T + 301)
    verify(BODY, header, secret=SECRET, now=T + 3000, tolerance=3600)


def test_a_signature_from_the_future_fails() -> None:
    header = sign(BODY, secret=SECRET, timestamp=T)
    with pytest.raises(InvalidSignature, match="in the future"):
        verify(BODY, header, secret=SECRET, now=T - 301)


def test_the_clock_is_the_default_now() -> None:
    with pytest.raises(InvalidSignature, match="old"):
        verify(BODY, sign(BODY, secret=SECRET, timestamp=T), secret=SECRET)


GOOD_V1 = sign(BODY, secret=SECRET, timestamp=T).split(",")[1]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no meetcore-signature header"),
        ("", "no meetcore-signature header"),
        ("   ", "no meetcore-signature header"),
        ("garbage", "'garbage' is not key=value"),
        (f"t={T};{GOOD_V1}", "t must be one unix time"),
        (f"t=abc,{GOOD_V1}", "t must be one unix time"),
        (f"t=-5,{GOOD_V1}", "t must be one unix time"),
        (f"t=١٢٣,{GOOD_V1}", "t must be one unix time"),  # digits, but not ASCII ones
        (f"t=1{'0' * 20},{GOOD_V1}", "t must be one unix time"),
        (f"t={T},t={T},{GOOD_V1}", "t must be one unix time"),
        (GOOD_V1, "no t=<timestamp>"),
        (f"t={T}", "no v1=<signature>"),
        (f"t={T},v0=abc", "no v1=<signature>"),
        (f"t={T},v1=", "does not match"),
        (f"t={T},v1=ü{'0' * 63}", "does not match"),
        (f"t={T},v1={GOOD_V1[3:].upper()}", "does not match"),
        (f"t={T},{GOOD_V1}," + "x=y," * 2000, "too long"),
    ],
)
def test_malformed_headers_fail_with_one_line(header: str | None, reason: str) -> None:
    with pytest.raises(InvalidSignature) as raised:
        verify(BODY, header, secret=SECRET, now=T)
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)
    assert SECRET not in str(raised.value)


def test_a_decoded_body_is_a_type_error() -> None:
    header = sign(BODY, secret=SECRET, timestamp=T)
    with pytest.raises(TypeError, match="raw body as bytes"):
        verify(BODY.decode(), header, secret=SECRET, now=T)  # type: ignore[arg-type]
