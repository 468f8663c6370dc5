"""`meetcore serve` over HTTPS and wss:// (docs/deploy.md): with a certificate and key of
one's own (`--tls-cert`/`--tls-key`), checked before it listens, and with `--dev-tls`,
which makes a development CA and a certificate in the current directory and reuses them.
Real servers, real clients (httpx, the Python client) trusting only the test's CA."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
import stat
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meetcore_client import init_meeting
from meetcore_server.testing import ServeProcess, serve_refuses

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]

DEV_FILES = {
    "meetcore-dev-ca.pem": 0o644,
    "meetcore-dev-ca-key.pem": 0o600,
    "meetcore-dev-cert.pem": 0o644,
    "meetcore-dev-key.pem": 0o600,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the client runs on asyncio


def _pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, and a certificate it signs for 127.0.0.1 and localhost with its key: files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meetcore test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
        "other_key": directory / "other-key.pem",
        "encrypted_key": directory / "encrypted-key.pem",
    }
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(_pem_key(key))
    files["other_key"].write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    files["encrypted_key"].write_bytes(_pem_key(key, b"secret passphrase"))
    return files


async def _get_token_room_and_join(url: str, ca: Path) -> None:
    """Over https: a token from /get-token, a room, and the Python client joins (wss)."""
    assert url.startswith("https://127.0.0.1:"), url
    async with httpx.AsyncClient(
        base_url=url, verify=ssl.create_default_context(cafile=ca)
    ) as http:
        token = (await http.get("/get-token")).json()["token"]
        created = await http.post("/v2/rooms", headers={"Authorization": token})
        assert created.status_code == 200, created.text
        room = created.json()["roomId"]
    meeting = init_meeting(base_url=url, token=token, meeting_id=room, participant_id="ada")
    assert meeting.url.startswith("wss://127.0.0.1:"), meeting.url
    await meeting.join()
    assert meeting.local_participant is not None
    assert meeting.local_participant.id == "ada"
    await meeting.leave()


async def test_tls_cert_and_key_serve_https_and_wss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path)
    args = ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    with ServeProcess(tmp_path, args=args) as server:
        assert server.url.startswith("https://"), server.output
        assert server.ws_url.startswith("wss://")
        assert f"GET {server.url}/get-token" in server.output
        # without the CA, the client does not trust the server
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/get-token")
        # plain HTTP on the HTTPS port gets no meetcore answer
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://") + "/get-token").raise_for_status()
        monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))  # what websockets' default trusts
        await _get_token_room_and_join(server.url, pki["ca"])
        assert await server.stop() == 0, server.output
    assert "Traceback" not in server.output


async def test_an_https_public_url_is_accepted(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    args = ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    args += ["--public-url", "https://meet.example.com"]
    with ServeProcess(tmp_path, args=args) as server:
        assert server.url.startswith("https://")
        assert server.terminate() == 0, server.output


async def test_dev_tls_makes_a_ca_reuses_it_and_clients_trusting_it_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ServeProcess(tmp_path, args=["--dev-tls"]) as server:
        assert server.url.startswith("https://"), server.output
        ca = tmp_path / "meetcore-dev-ca.pem"
        for name, mode in DEV_FILES.items():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
        assert f"export REQUESTS_CA_BUNDLE={ca}" in server.output
        assert f"export SSL_CERT_FILE={ca}" in server.output
        assert "--ignore-certificate-errors" in server.output
        assert f"created a development certificate authority {ca}" in server.output
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        await _get_token_room_and_join(server.url, ca)
        assert await server.stop() == 0, server.output
    first = {name: (tmp_path / name).read_bytes() for name in DEV_FILES}

    with ServeProcess(tmp_path, args=["--dev-tls"]) as again:
        assert "created a development" not in again.output  # reused, all of it
        assert {name: (tmp_path / name).read_bytes() for name in DEV_FILES} == first
        await _get_token_room_and_join(again.url, ca)
        assert await again.stop() == 0, again.output

    # another address: a new server certificate for it, from the same CA
    with ServeProcess(tmp_path, host="127.0.0.2", args=["--dev-tls"]) as other:
        assert "created a development server certificate" in other.output
        assert "127.0.0.2" in other.output
        assert "created a development certificate authority" not in other.output
        assert (tmp_path / "meetcore-dev-ca.pem").read_bytes() == first["meetcore-dev-ca.pem"]
        assert (tmp_path / "meetcore-dev-cert.pem").read_bytes() != first["meetcore-dev-cert.pem"]
        context = ssl.create_default_context(cafile=ca)
        assert httpx.get(f"{other.url}/get-token", verify=context).status_code == 200
        assert other.terminate() == 0, other.output
    for name, mode in DEV_FILES.items():
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


async def test_dev_tls_renews_an_expired_server_certificate(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, args=["--dev-tls"]) as server:
        assert server.terminate() == 0, server.output
    ca_key = serialization.load_pem_private_key(
        (tmp_path / "meetcore-dev-ca-key.pem").read_bytes(), password=None
    )
    ca = x509.load_pem_x509_certificate((tmp_path / "meetcore-dev-ca.pem").read_bytes())
    old = x509.load_pem_x509_certificate((tmp_path / "meetcore-dev-cert.pem").read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(
            old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (tmp_path / "meetcore-dev-cert.pem").write_bytes(
        expired.public_bytes(serialization.Encoding.PEM)
    )
    with ServeProcess(tmp_path, args=["--dev-tls"]) as again:
        assert "created a development server certificate" in again.output
        renewed = x509.load_pem_x509_certificate((tmp_path / "meetcore-dev-cert.pem").read_bytes())
        assert renewed.not_valid_after_utc > now + datetime.timedelta(days=30)
        context = ssl.create_default_context(cafile=tmp_path / "meetcore-dev-ca.pem")
        assert httpx.get(f"{again.url}/get-token", verify=context).status_code == 200
        assert again.terminate() == 0, again.output


def _hostile(tmp_path: Path, name: str) -> tuple[list[str], str]:
    """The options of a hostile input, and what the refusal says."""
    pki = make_pki(tmp_path)
    cert, key = str(pki["cert"]), str(pki["key"])
    (tmp_path / "text.pem").write_text("just some text\n")
    (tmp_path / "empty.pem").write_bytes(b"")
    (tmp_path / "binary.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n\x00\xff\xfe" * 10)
    (tmp_path / "huge.pem").write_bytes(pki["cert"].read_bytes() * 2000)  # > 1 MiB
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "folder").mkdir()
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    cases: dict[str, tuple[list[str], str]] = {
        "cert only": (["--tls-cert", cert], "--tls-cert needs --tls-key"),
        "key only": (["--tls-key", key], "--tls-key needs --tls-cert"),
        "missing cert": (
            ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", key],
            "--tls-cert: cannot read",
        ),
        "missing key": (
            ["--tls-cert", cert, "--tls-key", str(tmp_path / "nope.pem")],
            "--tls-key: cannot read",
        ),
        "directory": (["--tls-cert", str(tmp_path / "folder"), "--tls-key", key], "is a directory"),
        "fifo": (["--tls-cert", cert, "--tls-key", str(fifo)], "is not a regular file"),
        "text": (["--tls-cert", str(tmp_path / "text.pem"), "--tls-key", key], "is not a PEM file"),
        "empty": (
            ["--tls-cert", cert, "--tls-key", str(tmp_path / "empty.pem")],
            "is not a PEM file",
        ),
        "binary": (
            ["--tls-cert", str(tmp_path / "binary.pem"), "--tls-key", key],
            "is not a PEM file",
        ),
        "huge": (["--tls-cert", str(tmp_path / "huge.pem"), "--tls-key", key], "too large"),
        "bad base64": (
            ["--tls-cert", str(tmp_path / "bad.pem"), "--tls-key", key],
            "holds no PEM certificate",
        ),
        "key as cert": (["--tls-cert", key, "--tls-key", key], "holds no PEM certificate"),
        "cert as key": (["--tls-cert", cert, "--tls-key", cert], "holds no PEM private key"),
        "other key": (
            ["--tls-cert", cert, "--tls-key", str(pki["other_key"])],
            "is not the key of",
        ),
        "encrypted": (["--tls-cert", cert, "--tls-key", str(pki["encrypted_key"])], "is encrypted"),
        "dev-tls too": (["--dev-tls", "--tls-cert", cert, "--tls-key", key], "not both"),
        "empty name": (["--tls-cert", "", "--tls-key", key], "--tls-cert: cannot read"),
    }
    return cases[name]


HOSTILE = [
    "cert only",
    "key only",
    "missing cert",
    "missing key",
    "directory",
    "fifo",
    "text",
    "empty",
    "binary",
    "huge",
    "bad base64",
    "key as cert",
    "cert as key",
    "other key",
    "encrypted",
    "dev-tls too",
    "empty name",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_tls_input_is_a_usage_error_before_listening(tmp_path: Path, name: str) -> None:
    args, why = _hostile(tmp_path, name)
    line = serve_refuses(tmp_path, "--port", "0", "--store", "memory://", *args)
    assert line.startswith("meetcore: error: "), line
    assert why in line, line
    assert len(line) < 400
    assert not list(tmp_path.glob("meetcore-dev-*")), "nothing made"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_is_a_usage_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    pki["key"].chmod(0)
    args = ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    line = serve_refuses(tmp_path, "--port", "0", "--store", "memory://", *args)
    assert re.match(r"meetcore: error: --tls-key: cannot read .*: Permission denied", line), line


def test_a_broken_dev_ca_is_a_usage_error_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "meetcore-dev-ca.pem").write_text("not a CA\n")
    line = serve_refuses(tmp_path, "--port", "0", "--store", "memory://", "--dev-tls")
    assert "meetcore-dev-ca-key.pem" in line, line
    assert (tmp_path / "meetcore-dev-ca.pem").read_text() == "not a CA\n"
