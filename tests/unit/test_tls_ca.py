"""plumbing/tls.py's internal CA on the control machine, as a deploy makes it."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from declaration.settings import load_settings
from plumbing.tls import files_for_host, names_of


def test_a_ca_dir_with_a_long_path_gets_a_ca_and_a_host_certificate(tmp_path: Path):
    """A common name holds 64 characters at most; the CA dir's path is not put in it whole
    (a deploy with a CA dir under a long path ended in cryptography's ValueError)."""
    ca_dir = tmp_path / ("a-long-dir-name-" * 6) / "ca"
    assert len(str(ca_dir)) > 64
    settings = load_settings({"chroma_auth_proxy": True, "chroma_tls": "internal-ca",
                              "chroma_tls_ca_dir": str(ca_dir)})  # fmt: skip
    issued = files_for_host(settings, "db1.example")
    assert issued is not None
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    host = x509.load_pem_x509_certificate(issued.cert.encode())
    assert host.issuer == ca.subject
    assert "db1.example" in names_of(host)
    assert (ca_dir / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    again = files_for_host(settings, "db1.example")  # the CA is made once, then kept
    assert again is not None and again.cert == issued.cert
