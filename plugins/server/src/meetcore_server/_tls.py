"""HTTPS (and so wss://) for `meetcore serve`.

`check_files` checks `--tls-cert` / `--tls-key` before the server listens: each a
regular PEM file of at most `MAX_PEM` bytes, a certificate chain and an unencrypted
private key that belongs to its first certificate, which OpenSSL loads. Whatever is
wrong is a `UsageProblem` (one line, exit 2), never a traceback nor a passphrase prompt.

`dev_tls` (`--dev-tls`, development only) makes, in a directory, a development
certificate authority and a server certificate it signs for localhost, 127.0.0.1, ::1
(and the listening address), and reuses them on later starts: the CA is made once, the
server certificate again when it expires or lacks the address. Key files are readable
only by their owner.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meetcore import one_line
from meetcore.cli import UsageProblem

__all__ = [
    "CA_FILE",
    "CA_KEY_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "MAX_PEM",
    "DevTls",
    "check_files",
    "dev_tls",
]

#: The largest certificate chain or key file read (a chain of a few certificates is a
#: few KiB).
MAX_PEM = 1 << 20
#: The files `--dev-tls` makes in the current directory.
CA_FILE = "meetcore-dev-ca.pem"
CA_KEY_FILE = "meetcore-dev-ca-key.pem"
CERT_FILE = "meetcore-dev-cert.pem"
KEY_FILE = "meetcore-dev-key.pem"
#: How long what `--dev-tls` makes is valid, and how long before its end it is renewed.
CA_DAYS = 3650
CERT_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=1)
#: A host name that may go in a certificate (letters, digits, hyphens, dots).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?:\.(?!-)[A-Za-z0-9-]{1,63})*\.?")
_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def _show(path: str | os.PathLike[str]) -> str:
    return one_line(os.fspath(path), 200)


def _read_pem(what: str, path: str | os.PathLike[str]) -> bytes:
    """The bytes of a PEM file, or `UsageProblem` saying why it cannot be one."""
    shown = _show(path)
    try:
        info = os.stat(path)
    except (OSError, ValueError) as error:  # ValueError: a NUL in the path
        reason = getattr(error, "strerror", None) or str(error)
        raise UsageProblem(f"{what}: cannot read {shown}: {reason}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageProblem(f"{what}: {shown} is a directory, not a PEM file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageProblem(f"{what}: {shown} is not a regular file")
    too_large = f"{what}: {shown} is too large for a PEM file (more than {MAX_PEM} bytes)"
    if info.st_size > MAX_PEM:
        raise UsageProblem(too_large)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PEM + 1)
    except OSError as error:
        raise UsageProblem(f"{what}: cannot read {shown}: {error.strerror or error}") from None
    if len(data) > MAX_PEM:
        raise UsageProblem(too_large)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text or "-----BEGIN " not in text:
        raise UsageProblem(f"{what}: {shown} is not a PEM file (no -----BEGIN line)")
    return data


def _certificates(what: str, path: str | os.PathLike[str]) -> list[x509.Certificate]:
    data = _read_pem(what, path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise UsageProblem(f"{what}: {_show(path)} holds no PEM certificate") from None


def _private_key(what: str, path: str | os.PathLike[str]) -> object:
    data = _read_pem(what, path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise UsageProblem(
            f"{what}: {_show(path)} is encrypted: give the key unencrypted "
            "(openssl pkey -in KEY -out PLAIN), readable only by the server's user"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageProblem(f"{what}: {_show(path)} holds no PEM private key") from None


def _public(thing: object) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate's or a private key's public key."""
    key = thing.public_key()  # type: ignore[attr-defined]
    return bytes(key.public_bytes(_DER, _SPKI))


def check_files(cert: str, key: str) -> x509.Certificate:
    """Check `--tls-cert` and `--tls-key` (see the module); the server's certificate."""
    chain = _certificates("--tls-cert", cert)
    private = _private_key("--tls-key", key)
    if _public(chain[0]) != _public(private):
        raise UsageProblem(
            f"--tls-key: {_show(key)} is not the key of the certificate in {_show(cert)} "
            "(its first certificate must be the server's own)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:  # as uvicorn will load them; the password callback keeps OpenSSL from prompting
        context.load_cert_chain(cert, key, password=_no_password)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        why = one_line(str(getattr(error, "reason", None) or error), 200)
        raise UsageProblem(f"--tls-cert/--tls-key: OpenSSL cannot use them: {why}") from None
    return chain[0]


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")


# -- --dev-tls ---------------------------------------------------------------------------


@dataclass
class DevTls:
    """What `dev_tls` made or found: absolute paths, and what it made anew (to say so)."""

    ca: Path
    cert: Path
    key: Path
    made: list[str] = field(default_factory=list)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _names(host: str) -> list[x509.GeneralName]:
    """localhost, 127.0.0.1, ::1, and `host` if it is another address or a host name."""
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if _HOST_NAME.fullmatch(host) and host.rstrip(".").lower() != "localhost":
            names.append(x509.DNSName(host.rstrip(".").lower()))
        return names
    if not address.is_unspecified and x509.IPAddress(address) not in names:
        names.append(x509.IPAddress(address))
    return names


def _write(path: Path, data: bytes, mode: int) -> None:
    """Put `data` at `path` in one step, in a file that has `mode` from its creation."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        if hasattr(os, "fchmod"):  # whatever the umask
            os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int, ca: bool
) -> x509.CertificateBuilder:
    """A certificate for `key`, valid from 5 minutes ago for `days`, a CA's (signs
    certificates) or a server's (signs handshakes)."""
    now = _now()
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
    )


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meetcore development"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"meetcore development CA {uuid.uuid4().hex[:8]}"
            ),
        ]
    )
    cert = (
        _builder(name, name, key, CA_DAYS, ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_cert(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        _builder(subject, ca.subject, key, CERT_DAYS, ca=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _existing_ca(ca_path: Path, key_path: Path) -> tuple[x509.Certificate, object] | None:
    """The development CA in the directory; None when there is none, or it expires soon."""
    there = [path for path in (ca_path, key_path) if os.path.lexists(path)]
    if not there:
        return None
    redo = f"delete {ca_path.name} and {key_path.name} to make a new development CA"
    if len(there) == 1:
        missing = key_path if there[0] == ca_path else ca_path
        raise UsageProblem(f"--dev-tls: {there[0].name} is there but not {missing.name}: {redo}")
    ca = _certificates("--dev-tls", ca_path)[0]
    key = _private_key("--dev-tls", key_path)
    if _public(ca) != _public(key):
        raise UsageProblem(f"--dev-tls: {key_path.name} is not the key of {ca_path.name}: {redo}")
    if ca.not_valid_after_utc - RENEW_BEFORE < _now():
        return None
    return ca, key


def _reusable(cert_path: Path, key_path: Path, ca: x509.Certificate, names: list[object]) -> bool:
    """Whether the server certificate there is the CA's, valid a while yet, for `names`."""
    try:
        with open(cert_path, "rb") as file:
            cert = x509.load_pem_x509_certificate(file.read(MAX_PEM))
        with open(key_path, "rb") as file:
            key = serialization.load_pem_private_key(file.read(MAX_PEM), password=None)
        cert.verify_directly_issued_by(ca)
        has = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    except x509.ExtensionNotFound:
        return False
    return (
        _public(cert) == _public(key)
        and cert.not_valid_after_utc - RENEW_BEFORE > _now()
        and all(name in has for name in names)
    )


def dev_tls(directory: str | os.PathLike[str], host: str) -> DevTls:
    """The development CA and server certificate in `directory`, made if need be (see
    the module); `UsageProblem` for a CA there that cannot be used."""
    where = Path(directory).absolute()
    found = DevTls(where / CA_FILE, where / CERT_FILE, where / KEY_FILE)
    ca_key_path = where / CA_KEY_FILE
    names = _names(host)
    try:
        existing = _existing_ca(found.ca, ca_key_path)
        if existing is None:
            ca, ca_key = _new_ca()
            _write(ca_key_path, _key_pem(ca_key), 0o600)
            _write(found.ca, _cert_pem(ca), 0o644)
            found.made.append(f"a development certificate authority {found.ca}")
        else:
            ca, ca_key = existing[0], existing[1]  # type: ignore[assignment]
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise UsageProblem(f"--dev-tls: {CA_KEY_FILE} is not a key meetcore made")
        if existing is None or not _reusable(found.cert, found.key, ca, list(names)):
            cert, key = _new_cert(ca, ca_key, names)
            _write(found.key, _key_pem(key), 0o600)
            _write(found.cert, _cert_pem(cert), 0o644)
            shown = ", ".join(str(getattr(name, "value", name)) for name in names)
            found.made.append(f"a development server certificate {found.cert} for {shown}")
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageProblem(f"--dev-tls: cannot write in {_show(where)}: {reason}") from None
    return found
