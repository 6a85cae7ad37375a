"""chroma_tls=acme on the control machine: the names, the CA bundle, what the host gets."""

from __future__ import annotations

import datetime
import shlex

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from declaration.settings import SettingsError, load_settings
from plumbing.tls import acme_for_host, declared_names

ACME = {
    "chroma_auth_proxy": True,
    "chroma_tls": "acme",
    "chroma_acme_email": "ops@example.org",
    "chroma_project_dir": "/srv/kb",
    "chroma_compose_project": "kb",
}


def target(host_name: str, **data):
    settings = load_settings({**ACME, **data})
    return acme_for_host(settings, host_name, 1000, 1000, "/srv/kb/secrets", "/srv/kb/secrets/tls")


def test_the_names_are_the_inventory_name_unless_given():
    assert target("kb.example.org").domains == ("kb.example.org",)
    given = target("10.0.0.5", chroma_acme_domains=["KB.example.org", "www.kb.example.org"])
    assert given.domains == ("kb.example.org", "www.kb.example.org")
    settings = load_settings({**ACME, "chroma_acme_domains": "kb.example.org"})
    assert declared_names(settings, "@local") == ["kb.example.org"]


@pytest.mark.parametrize("host_name", ["@local", "10.0.0.5", "db1"])
def test_a_host_with_no_dns_name_is_refused_in_one_line(host_name):
    with pytest.raises(SettingsError) as error:
        target(host_name)
    assert str(error.value) == (
        f"chroma_acme_domains: {host_name} is not a DNS name an ACME CA can reach; set "
        "chroma_acme_domains to the host's public DNS names (each must resolve to it)"
    )
    # drift then compares no names (the deploy refused before any certificate existed)
    assert declared_names(load_settings(ACME), host_name) is None


def test_the_ca_bundle_is_read_and_checked(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(SettingsError) as error:
        target("kb.example.org", chroma_acme_ca_file=str(bad))
    assert str(error.value).startswith(f"chroma_acme_ca_file: {str(bad)!r} holds no PEM")
    missing = tmp_path / "missing.pem"
    with pytest.raises(SettingsError) as error:
        target("kb.example.org", chroma_acme_ca_file=str(missing))
    assert "cannot be read (No such file or directory)" in str(error.value)


def test_the_host_gets_its_config_root_only_and_a_cron_line_of_paths(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found = target("kb.example.org", chroma_acme_ca_file=str(bundle), chroma_tls_renew_days=20)
    config = dict(line.split("=", 1) for line in found.config.splitlines())
    assert config["domains"] == "kb.example.org"
    assert config["renew_days"] == "20"
    assert config["ca_file"] == "/srv/kb/secrets/acme/acme-ca.pem"
    assert config["tls_dir"] == "/srv/kb/secrets/tls"
    modes = {item.path: (item.uid, item.mode) for item in found.resources}
    assert modes["/srv/kb/secrets/acme"] == (0, "700")
    assert modes["/srv/kb/secrets/acme/acme.conf"] == (0, "600")
    assert modes["/srv/kb/secrets/acme/acme-ca.pem"] == (0, "600")
    assert modes["/srv/kb/secrets/tls"] == (1000, "700")
    words = shlex.split(found.cron_command)
    assert words[0].startswith("PATH=") and words[1] == "bash"
    assert words[2].endswith("/chroma-acme.sh")
    assert words[3:] == ["renew", "/srv/kb/secrets/acme", ">>/var/log/chroma-deploy/kb-acme.log",
                         "2>&1"]  # fmt: skip
    assert "%" not in found.cron_command  # cron reads % as a newline
