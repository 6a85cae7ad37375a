"""files/chroma_inventory.py over TLS: the proxy's CA and name, at the URL's own address.

A real https server on 127.0.0.1 (http.server with an ssl context) whose certificate,
from a throwaway CA, names only ``kb.test``, as a chroma_tls=files certificate may:
the host's tools reach it at 127.0.0.1 and verify it for the name the deploy wrote.
"""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import subprocess
import sys
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FILES = Path(__file__).resolve().parent.parent.parent / "files"
sys.path.insert(0, str(FILES))
import chroma_inventory  # noqa: E402

NAME = "kb.test"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(*[False] * 5, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _server_cert(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


class Server:
    """An https server answering Chroma's collections list (one collection) and its get."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.paths: list[str] = []
        self.names: list[str | None] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: object) -> None:
                paths.append(self.path)
                text = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def do_GET(self) -> None:
                self._answer([{"id": "c1", "name": "books"}])

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self._answer({"ids": ["b1", "b2"], "documents": ["one", "two"],
                              "metadatas": [{"n": 1}, {"n": 2}]})  # fmt: skip

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda _sock, name, _ctx: self.names.append(name)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.handle_error = lambda *_: None  # type: ignore[method-assign]
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, Path]]:
    """The server, and the PEM files of its CA and of another CA."""
    base = tmp_path_factory.mktemp("pki")
    ca, ca_key = _ca("chroma-deploy test CA")
    other, _ = _ca("another CA")
    cert, key = _server_cert(ca, ca_key)
    (base / "cert.pem").write_bytes(_pem(cert))
    (base / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (base / "ca.pem").write_bytes(_pem(ca))
    (base / "other-ca.pem").write_bytes(_pem(other))
    server = Server(base / "cert.pem", base / "key.pem")
    yield server, base / "ca.pem", base / "other-ca.pem"
    server.stop()


def tls_dir(path: Path, ca: Path, name: str) -> str:
    """A dir as the deploy writes <secrets>/tls: ca.pem and name."""
    path.mkdir()
    (path / "ca.pem").write_bytes(ca.read_bytes())
    (path / "name").write_text(name + "\n")
    return str(path)


def test_the_ca_and_the_name_verify_the_server_at_the_urls_address(pki, tmp_path):
    server, ca, _ = pki
    before = len(server.paths)
    chroma = chroma_inventory.Chroma(server.url, None, tls_dir(tmp_path / "tls", ca, NAME))
    found = chroma_inventory.inventory(chroma)
    books = found["collections"]["default_tenant/default_database/books"]
    assert books["count"] == 2
    assert books == chroma_inventory.summary({"b1": ("one", {"n": 1}), "b2": ("two", {"n": 2})})
    assert len(server.paths) > before
    # The name asked for in the handshake is the certificate's, not the URL's address.
    assert server.names[-1] == NAME
    # The command line's --tls-dir reaches it the same way.
    run = subprocess.run(
        [sys.executable, str(FILES / "chroma_inventory.py"), server.url,
         "--tls-dir", str(tmp_path / "tls")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == found


@pytest.mark.parametrize(
    ("case", "name", "refusal"),
    [
        ("wrong name", "other.test", "Hostname mismatch"),
        ("wrong CA", NAME, "certificate verify failed"),
        ("the URL's address as the name", "127.0.0.1", "IP address mismatch"),
    ],
)
def test_a_wrong_name_or_ca_fails_the_handshake(pki, tmp_path, case, name, refusal):
    server, ca, other = pki
    before = len(server.paths)
    trusted = other if case == "wrong CA" else ca
    chroma = chroma_inventory.Chroma(server.url, None, tls_dir(tmp_path / "tls", trusted, name))
    with pytest.raises(urllib.error.URLError) as failed:
        chroma.collections()
    assert isinstance(failed.value.reason, ssl.SSLCertVerificationError)
    assert refusal in str(failed.value.reason)
    assert len(server.paths) == before  # no request was sent
    run = subprocess.run(
        [sys.executable, str(FILES / "chroma_inventory.py"), server.url,
         "--tls-dir", str(tmp_path / "tls")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.startswith(f"chroma_inventory: {server.url}: URLError: ")
    assert "CERTIFICATE_VERIFY_FAILED" in run.stderr and run.stdout == ""


def test_without_the_tls_dir_the_default_ca_store_refuses_it(pki):
    server, _, _ = pki
    with pytest.raises(urllib.error.URLError) as failed:
        chroma_inventory.Chroma(server.url, None).collections()
    assert isinstance(failed.value.reason, ssl.SSLCertVerificationError)


def test_a_tls_dir_with_an_http_url_is_refused(pki, tmp_path):
    _, ca, _ = pki
    with pytest.raises(ValueError, match="not an https URL"):
        chroma_inventory.Chroma("http://127.0.0.1:1", None, tls_dir(tmp_path / "tls", ca, NAME))
