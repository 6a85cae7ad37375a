"""The proxy's certificate and key, made on the control machine (docs/security.md, "TLS").

``chroma_tls=files`` reads your certificate and key; ``chroma_tls=internal-ca`` keeps a
private CA in ``chroma_tls_ca_dir`` (created once, kept: its key never leaves the control
machine) and issues each host a certificate of its own there, again when it comes within
``chroma_tls_renew_days`` of its end or its names are no longer the declared ones. The host
gets the certificate, its key (0600), the trust anchor its own checks use and the name they
ask for (:class:`TlsFiles`); a key is never printed.

Made with the ``cryptography`` library, which pyinfra's paramiko already brings: no key on
a command line, no temporary file holding one.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from declaration.acme import AcmeTarget
from declaration.resources import TlsFiles
from declaration.settings import Settings, SettingsError

# A host certificate lives a year (under the 397 days browsers accept); the CA ten.
HOST_DAYS = 365
CA_DAYS = 3650
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_WILDCARD = ("0.0.0.0", "::")  # noqa: S104 - reading a bind address, not binding


def check_address(settings: Settings) -> str:
    """The address the host's own checks connect to: the bind address, loopback for a wildcard."""
    if settings.bind_address in _WILDCARD:
        return "127.0.0.1" if settings.bind_address == "0.0.0.0" else "::1"  # noqa: S104
    return settings.bind_address


def wanted_names(settings: Settings, host_name: str) -> list[str]:
    """The names an internal-ca certificate holds, in order (DNS names and IP addresses).

    The inventory's host name (``localhost`` for ``@local``), the bind address unless it
    is a wildcard, and for a wildcard or loopback bind ``127.0.0.1`` and ``localhost``,
    which the host's own checks and its local clients use.
    """
    names: list[str] = []
    if host_name == "@local":
        names.append("localhost")
    elif not host_name.startswith("@"):
        names.append(host_name)
    address = ipaddress.ip_address(settings.bind_address)
    if settings.bind_address not in _WILDCARD:
        names.append(str(address))
    if settings.bind_address in _WILDCARD or address.is_loopback:
        names += ["127.0.0.1", "localhost"]
    return list(dict.fromkeys(names))


def files_for_host(settings: Settings, host_name: str) -> TlsFiles | None:
    """This host's certificate and key, or None when TLS is off. SettingsError: one line."""
    if settings.tls == "files":
        return _given_files(settings)
    if settings.tls == "internal-ca":
        return _issued_files(settings, host_name)
    return None


def acme_domains(settings: Settings, host_name: str) -> list[str]:
    """chroma_tls=acme: the certificate's DNS names; unset, the inventory's host name.

    SettingsError: a host known by no DNS name (``@local``, an address): an ACME CA asks
    each name over the network, so the names must be given.
    """
    if settings.acme_domains:
        return list(settings.acme_domains)
    if host_name.startswith("@") or _is_ip(host_name) or "." not in host_name:
        raise SettingsError(
            f"chroma_acme_domains: {host_name} is not a DNS name an ACME CA can reach; set "
            "chroma_acme_domains to the host's public DNS names (each must resolve to it)"
        )
    return [host_name.lower()]


def declared_names(settings: Settings, host_name: str) -> list[str] | None:
    """The names the proxy's certificate must hold (drift compares), or None: not ours to say
    (chroma_tls=files: your certificate's own names; off)."""
    if settings.tls == "internal-ca":
        return wanted_names(settings, host_name)
    if settings.tls == "acme":
        try:
            return acme_domains(settings, host_name)
        except SettingsError:
            return None
    return None


def acme_for_host(
    settings: Settings, host_name: str, uid: int, gid: int, secrets_dir: str, tls_dir: str
) -> AcmeTarget | None:
    """chroma_tls=acme: what the host needs to obtain its certificate; None: another mode.

    SettingsError: no DNS name for the host, or chroma_acme_ca_file unreadable or no PEM.
    """
    if settings.tls != "acme":
        return None
    assert settings.acme_email
    domains = acme_domains(settings, host_name)
    bundle = None
    if settings.acme_ca_file:
        raw = _read("chroma_acme_ca_file", settings.acme_ca_file)
        try:
            x509.load_pem_x509_certificates(raw)
        except ValueError:
            raise SettingsError(
                f"chroma_acme_ca_file: {settings.acme_ca_file!r} holds no PEM certificate; "
                "name the CA bundle the ACME server's HTTPS certificate verifies with"
            ) from None
        bundle = raw.decode()
    return AcmeTarget(
        project_dir=settings.project_dir,
        compose_project=settings.compose_project,
        compose_file=settings.compose_path,
        secrets_dir=secrets_dir,
        tls_dir=tls_dir,
        directory=settings.acme_directory,
        email=settings.acme_email,
        domains=tuple(domains),
        http_port=settings.acme_http_port,
        renew_days=settings.tls_renew_days,
        uid=uid,
        gid=gid,
        host_name=host_name,
        ca_bundle=bundle,
    )


def names_of(cert: x509.Certificate) -> list[str]:
    """The subject alternative names of a certificate, DNS names and addresses as text."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    dns = sans.get_values_for_type(x509.DNSName)
    addresses = [str(address) for address in sans.get_values_for_type(x509.IPAddress)]
    return [*dns, *addresses]


def _check_name(names: list[str], address: str) -> str:
    """The name the host's checks ask for: the address itself when the certificate holds
    it, else its first DNS name (curl --resolve sends it to the address)."""
    if address in names:
        return address
    for name in names:
        if not _is_ip(name):
            return name
    return names[0] if names else address


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SettingsError(
            f"{key}: {path!r} cannot be read ({error.strerror}); name a readable file on the "
            "control machine"
        ) from None


def _given_files(settings: Settings) -> TlsFiles:
    """chroma_tls=files: the user's certificate and key, checked to belong together."""
    assert settings.tls_cert_file and settings.tls_key_file
    cert_pem = _read("chroma_tls_cert_file", settings.tls_cert_file)
    key_pem = _read("chroma_tls_key_file", settings.tls_key_file)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise SettingsError(
            f"chroma_tls_cert_file: {settings.tls_cert_file!r} holds no PEM certificate; name "
            "the server certificate's PEM file (its chain after it)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise SettingsError(
            f"chroma_tls_key_file: {settings.tls_key_file!r} holds no PEM private key without "
            "a passphrase; name the key of the certificate, unencrypted (it is shipped 0600)"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.PEM
    if key.public_key().public_bytes(encoding, public) != chain[0].public_key().public_bytes(
        encoding, public
    ):
        raise SettingsError(
            f"chroma_tls_key_file: {settings.tls_key_file!r} is not the key of the certificate "
            "in chroma_tls_cert_file; name the pair that belongs together"
        )
    names = names_of(chain[0])
    # The host's checks trust the certificate itself (curl takes a leaf as its anchor).
    return TlsFiles(
        cert_pem.decode(),
        key_pem.decode(),
        chain[0].public_bytes(encoding).decode(),
        _check_name(names, check_address(settings)),
    )


def _issued_files(settings: Settings, host_name: str) -> TlsFiles:
    """chroma_tls=internal-ca: this host's certificate from the CA, issued when needed."""
    assert settings.tls_ca_dir
    ca_dir = Path(settings.tls_ca_dir)
    try:
        ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (ca_dir / ".lock").open("a") as lock:
            # One writer at a time: hosts of a fleet run in parallel, as may two deploys.
            fcntl.flock(lock, fcntl.LOCK_EX)
            ca_cert, ca_key = _ca(ca_dir)
            names = wanted_names(settings, host_name)
            host_dir = ca_dir / "hosts" / (_SAFE_NAME.sub("_", host_name.lstrip("@")) or "host")
            cert, key_pem = _host_cert(host_dir, ca_cert, ca_key, names, settings.tls_renew_days)
    except OSError as error:
        raise SettingsError(
            f"chroma_tls_ca_dir: {settings.tls_ca_dir!r} cannot be used ({error.strerror}); "
            "name a dir on the control machine this user may write"
        ) from None
    encoding = serialization.Encoding.PEM
    return TlsFiles(
        cert.public_bytes(encoding).decode() + ca_cert.public_bytes(encoding).decode(),
        key_pem.decode(),
        ca_cert.public_bytes(encoding).decode(),
        _check_name(names, check_address(settings)),
    )


def _write_private(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Written aside with its final mode before any byte, then renamed into place."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.unlink(missing_ok=True)
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA in ``ca_dir`` (ca.pem, ca-key.pem 0600), created once and never replaced."""
    cert_path, key_path = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    if cert_path.exists() or key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    # A common name holds at most 64 characters, and a CA dir's path can be longer: the
    # name says whose CA it is by a digest of the dir (ca.pem's own path names the dir).
    digest = hashlib.sha256(str(ca_dir).encode()).hexdigest()[:16]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"chroma-deploy CA {digest}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _private_key_pem(key))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _host_cert(
    host_dir: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: list[str],
    renew_days: int,
) -> tuple[x509.Certificate, bytes]:
    """The host's certificate and key: the kept ones while they are still good, else new."""
    cert_path, key_path = host_dir / "cert.pem", host_dir / "key.pem"
    now = datetime.datetime.now(datetime.UTC)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if (
            cert.issuer == ca_cert.subject
            and sorted(names_of(cert)) == sorted(names)
            and cert.not_valid_after_utc - now > datetime.timedelta(days=renew_days)
        ):
            return cert, key_path.read_bytes()
    host_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(name)) if _is_ip(name) else x509.DNSName(name)
        for name in names
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=HOST_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = _private_key_pem(key)
    _write_private(key_path, key_pem)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key_pem
