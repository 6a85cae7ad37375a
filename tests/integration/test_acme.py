"""chroma_tls=acme (#25 section 1) against pebble, Let's Encrypt's ACME test server, on loopback.

One pebble (Debian's package; its config is written here: pebble ships none) and one Chroma
1.5.9 stack behind the proxy. The deploy installs files/chroma-acme.sh, which runs lego on
the host: HTTP-01, answered by lego's own server on a free port that pebble's validation
asks (``httpPort``), with "localhost" resolving to 127.0.0.1 as for any name. Pebble issues
certificates that live an hour (``certificateValidityPeriod``): within chroma_tls_renew_days
from the start, so drift reports it and the schedule's own command renews it; the proxy
is reloaded, not recreated, while a client loop runs with no failed request.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import base_data, converge, free_port, run_drift, sh
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness.proxy_stack import ServedStack

pytestmark = [pytest.mark.docker, pytest.mark.slow]

VALIDITY = 3600  # seconds a certificate from pebble lives: within the 30 renew days


def _https_identity(base: Path) -> Path:
    """A CA and a certificate for localhost that pebble serves its own HTTPS with; lego
    trusts the CA (chroma_acme_ca_file). Returns the CA's file."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble https test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (base / "pebble-ca.pem").write_bytes(ca.public_bytes(pem))
    (base / "pebble-cert.pem").write_bytes(cert.public_bytes(pem))
    (base / "pebble-key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return base / "pebble-ca.pem"


class Pebble:
    """pebble on loopback: its ACME directory, its management port, the HTTP-01 port it asks."""

    def __init__(self, base: Path) -> None:
        self.ca_file = _https_identity(base)
        self.port, self.management, self.http_port = free_port(), free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management}",
                "certificate": str(base / "pebble-cert.pem"),
                "privateKey": str(base / "pebble-key.pem"),
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": VALIDITY,
            }
        }
        (base / "pebble.json").write_text(json.dumps(config))
        self.log = (base / "pebble.log").open("w")
        # No random wait before a validation; no nonce refused on purpose (lego would retry).
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        self.process = subprocess.Popen(
            ["pebble", "-config", str(base / "pebble.json")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=base,
        )  # fmt: skip
        self.directory = f"https://localhost:{self.port}/dir"
        trusted = ssl.create_default_context(cafile=str(self.ca_file))
        for _ in range(100):
            try:
                httpx.get(self.directory, verify=trusted, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        self.root = base / "pebble-root.pem"
        roots = f"https://localhost:{self.management}/roots/0"
        self.root.write_text(httpx.get(roots, verify=trusted, timeout=10).text)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


class Stack(ServedStack):
    """The stack behind the proxy with chroma_tls=acme: its data, token and paths."""

    def __init__(self, base: Path, pebble: Pebble) -> None:
        self.name = f"cdacme{uuid.uuid4().hex[:8]}"
        self.project_dir = base / "stack"
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        self.env = {**os.environ, "CHROMA_AUTH_TOKEN": self.token}
        self.data = base_data(
            self.project_dir,
            self.name,
            chroma_auth_proxy=True,
            chroma_tls="acme",
            chroma_acme_directory=pebble.directory,
            chroma_acme_email="ops@example.org",
            chroma_acme_domains="localhost",
            chroma_acme_http_port=pebble.http_port,
            chroma_acme_ca_file=str(pebble.ca_file),
            # Not root: nginx runs a master process, which reloads (operations/tls.py).
            chroma_owner=1234,
            chroma_group=1234,
        )
        self.port = self.data["chroma_port"]
        self.tls_dir = self.project_dir / "secrets" / "tls"

    def served(self, root: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}", "-servername",
             "localhost", "-CAfile", str(root), "-verify_return_error", "-showcerts"],
            input="", capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    def cron_entry(self) -> str:
        """The command of this project's ACME line in root's crontab (the five fields off)."""
        lines = sh("crontab -l -u root").stdout.splitlines()
        index = lines.index(f"# pyinfra-name=chroma-deploy acme {self.project_dir}")
        return lines[index + 1].split(None, 5)[5]

    def remove_cron_entry(self) -> None:
        listed = sh("crontab -l -u root 2>/dev/null", check=False).stdout.splitlines()
        marker = f"# pyinfra-name=chroma-deploy acme {self.project_dir}"
        if marker not in listed:
            return
        index = listed.index(marker)
        keep = [line for at, line in enumerate(listed) if at not in (index, index + 1)]
        subprocess.run(["crontab", "-u", "root", "-"], input="".join(f"{line}\n" for line in keep),
                       text=True, check=True)  # fmt: skip


class Loop(threading.Thread):
    """Heartbeats through the proxy over TLS until stopped and at least ``least`` were asked:
    one kept-alive client and a new connection per request, in turns; failures by kind."""

    def __init__(self, stack: Stack, root: Path, least: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.least = stack, least
        self.trusted = ssl.create_default_context(cafile=str(root))
        self.done = threading.Event()
        self.ok = 0
        self.failed: dict[str, list[str]] = {"kept": [], "new": []}

    def run(self) -> None:
        url = f"https://localhost:{self.stack.port}/api/v2/heartbeat"
        headers = {"X-Chroma-Token": self.stack.token}
        with httpx.Client(verify=self.trusted, headers=headers, timeout=10) as kept:
            while not self.done.is_set() or self.ok + self.failures < self.least:
                for kind in ("kept", "new"):
                    try:
                        if kind == "kept":
                            answer = kept.get(url)
                        else:
                            answer = httpx.get(url, verify=self.trusted, headers=headers,
                                               timeout=10)  # fmt: skip
                        if answer.status_code == 200:
                            self.ok += 1
                        else:
                            self.failed[kind].append(f"HTTP {answer.status_code}")
                    except httpx.HTTPError as error:
                        self.failed[kind].append(repr(error))

    @property
    def failures(self) -> int:
        return sum(len(found) for found in self.failed.values())


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("acme")
    pebble = Pebble(base)
    stack = Stack(base, pebble)
    try:
        first = converge(stack.data, env=stack.env)
        stack.outputs = [first.output]  # type: ignore[attr-defined]
        yield stack, pebble
    finally:
        if (stack.project_dir / "docker-compose.yml").exists():
            sh(f"cd '{stack.project_dir}' && docker compose down --timeout 5", check=False)
        stack.remove_cron_entry()
        sh(f"rm -f /var/log/chroma-deploy/{stack.name}-acme.log", check=False)
        pebble.stop()
        if not os.environ.get("ACME_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def client(stack: Stack, root: Path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.HttpClient(
        host="localhost",
        port=stack.port,
        ssl=True,
        headers={"X-Chroma-Token": stack.token},
        settings=Settings(chroma_server_ssl_verify=str(root)),
    )


def test_pebble_issues_the_certificate_the_proxy_serves(acme):
    stack, pebble = acme
    served = stack.served(pebble.root)
    # Verified up to pebble's root, which only pebble's management port hands out.
    assert served.returncode == 0, served.stdout + served.stderr
    assert "Verify return code: 0 (ok)" in served.stdout
    assert "Pebble Intermediate CA" in served.stdout
    names = sh(f"openssl x509 -in '{stack.tls_dir}/cert.pem' -noout -ext subjectAltName").stdout
    assert "DNS:localhost" in names
    assert (stack.tls_dir / "name").read_text() == "localhost\n"
    uid, mode = sh(f"stat -c '%u %a' '{stack.tls_dir}/key.pem'").stdout.split()
    assert (uid, mode) == ("1234", "600")
    assert sh(f"stat -c '%u %a' '{stack.project_dir}/secrets/acme'").stdout.split() == ["0", "700"]
    collection = client(stack, pebble.root).get_or_create_collection(
        "acme", embedding_function=None
    )
    ids = [f"acme-{i}" for i in range(10)]
    collection.add(ids=ids, embeddings=[[float(i), 1.0] for i in range(10)])
    assert sorted(collection.get(include=[])["ids"]) == sorted(ids)


def test_drift_reports_the_short_lived_certificate_and_other_names(acme):
    stack, _ = acme
    due = run_drift(stack.data, "--no-color", env=stack.env)
    assert due.returncode == 2, due.output
    # The certificate's hour is within the 30 renew days; nothing else drifted.
    assert "@local: 1 drift item(s)" in due.output, due.output
    assert "tls_certificate" in due.output and "valid beyond 30 days" in due.output
    other = run_drift({**stack.data, "chroma_acme_domains": "localhost,kb.test"}, "--no-color",
                      env=stack.env)  # fmt: skip
    assert other.returncode == 2, other.output
    assert "cert.pem: localhost, kb.test -> localhost" in other.output


def test_the_schedule_renews_it_and_nginx_reloads_it_in_the_same_container(acme):
    stack, pebble = acme
    count = client(stack, pebble.root).get_collection("acme", embedding_function=None).count()
    old = stack.served_fingerprint()
    assert old == stack.file_fingerprint(stack.tls_dir / "cert.pem")
    before_ids = stack.container_ids()
    command = stack.cron_entry()
    assert "chroma-acme.sh renew" in command
    loop = Loop(stack, pebble.root, least=2000)
    loop.start()
    while loop.ok < 500:
        time.sleep(0.1)
    started = time.monotonic()
    renewed = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=300,
                             check=False)  # fmt: skip
    took = time.monotonic() - started
    time.sleep(1)
    loop.done.set()
    loop.join(120)
    log = Path(f"/var/log/chroma-deploy/{stack.name}-acme.log").read_text()
    assert renewed.returncode == 0, log
    assert "certificate from " + pebble.directory in log
    assert "nginx in the proxy reloaded" in log
    new = stack.file_fingerprint(stack.tls_dir / "cert.pem")
    assert new != old
    assert stack.served_fingerprint() == new
    assert stack.container_ids() == before_ids
    after = client(stack, pebble.root).get_collection("acme", embedding_function=None).count()
    print(
        f"renewal by the schedule's command in {took:.1f} s: {loop.ok + loop.failures} "
        f"requests, {len(loop.failed['new'])} failed on new connections, "
        f"{len(loop.failed['kept'])} on the kept-alive one {loop.failed['kept']}; "
        f"records {count} before, {after} after"
    )
    assert loop.ok + loop.failures >= 2000
    # The old worker closes its idle kept-alive connections when it stops; auth-proxy-reload
    # drains them first (each answer closes its connection for a second on each side), so a
    # request on the kept-alive one meets no such close either (before the drain: about one
    # in five renewals here).
    assert loop.failed == {"new": [], "kept": []}
    assert after == count == 10
    # The key reached no output: the deploy's, the schedule's log, lego's own.
    key = (stack.tls_dir / "key.pem").read_text()
    body = [line for line in key.splitlines() if "PRIVATE KEY" not in line]
    lego_log = (stack.project_dir / "secrets" / "acme" / "lego.log").read_text()
    for text in (*stack.outputs, log, lego_log, sh("ps auxww").stdout):  # type: ignore[attr-defined]
        assert not any(line in text for line in body)
        assert stack.token not in text
    assert shlex.quote(str(stack.project_dir / "secrets" / "acme")) in command


def test_leaving_acme_takes_the_renewal_out_of_roots_crontab(acme, tmp_path):
    stack, _ = acme
    marker = f"# pyinfra-name=chroma-deploy acme {stack.project_dir}"
    assert marker in sh("crontab -l -u root").stdout
    data = {key: value for key, value in stack.data.items() if not key.startswith("chroma_acme_")}
    data.update(chroma_tls="internal-ca", chroma_tls_ca_dir=str(tmp_path / "ca"))
    before_ids = stack.container_ids()
    switched = converge(data, stack.env)  # and a second run changes nothing
    assert switched.returncode == 0, switched.output
    crontab = sh("crontab -l -u root").stdout
    assert marker not in crontab
    assert f"chroma-acme.sh renew {stack.project_dir}/secrets/acme" not in crontab
    # The internal CA's certificate is served now, by a reload: the same containers.
    assert stack.served_fingerprint() == stack.file_fingerprint(stack.tls_dir / "cert.pem")
    assert (
        "chroma-deploy CA"
        in sh(f"openssl x509 -in '{stack.tls_dir}/cert.pem' -noout -issuer").stdout
    )
    assert stack.container_ids() == before_ids
    # lego's account and certificates are kept (root's, 0700).
    assert (stack.project_dir / "secrets" / "acme" / "acme.conf").exists()
