"""TLS on the auth proxy (#25 section 1), on one shared stack: what clients see, and renewals.

One Chroma 1.5.9 stack behind the proxy with chroma_tls=internal-ca: real openssl s_client
(the protocol versions, the names), real curl (plain HTTP on the TLS port), the real
chromadb client over TLS with the CA bundle and the token; the host's own reads of Chroma
through the TLS port (prove.py, backup.py and restore.py, a migration's check, an upgrade's
vector sample, up.sh's summary). Then a renewal and a switch to
chroma_tls=files, each reaching nginx by a reload with the same containers and no failed
request, and no key in any output, `docker inspect` or the process list.
"""

from __future__ import annotations

import calendar
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import base_data, converge, run_deploy, run_drift, sh
from harness.proxy_stack import ServedStack

pytestmark = [pytest.mark.docker]


class Stack(ServedStack):
    """The shared stack: its data, the token's environment, paths and port."""

    def __init__(self, base: Path) -> None:
        self.name = f"cdtls{uuid.uuid4().hex[:8]}"
        self.project_dir = base / "stack"
        self.ca_dir = base / "ca"
        self.token = secrets.token_hex(24)
        self.env = {**os.environ, "CHROMA_AUTH_TOKEN": self.token}
        self.data = base_data(
            self.project_dir,
            self.name,
            chroma_auth_proxy=True,
            chroma_tls="internal-ca",
            chroma_tls_ca_dir=str(self.ca_dir),
            # Not root: nginx then runs a master process, which reloads (as root it runs as
            # one process, which cannot: operations/tls.py restarts it then).
            chroma_owner=1234,
            chroma_group=1234,
        )
        self.port = self.data["chroma_port"]
        self.tls_dir = self.project_dir / "secrets" / "tls"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("tls")
    shared = Stack(base)
    first = converge(shared.data, env=shared.env)
    shared.outputs = [first.output]  # type: ignore[attr-defined]
    yield shared
    if (shared.project_dir / "docker-compose.yml").exists() and not os.environ.get("TLS_KEEP"):
        sh(f"cd '{shared.project_dir}' && docker compose down --timeout 5", check=False)
    if not os.environ.get("TLS_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


def s_client(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{stack.port}", *args],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_tls_1_2_and_1_3_only_with_the_host_names(stack):
    ca = str(stack.ca_dir / "ca.pem")
    # The client is let offer TLS 1.1 (SECLEVEL=0); the proxy must still refuse it.
    old = s_client(stack, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert old.returncode != 0
    # No cipher agreed (this client against a server that allows 1.1 says "New, TLSv1.0,
    # Cipher is ECDHE-ECDSA-AES256-SHA" and "Protocol  : TLSv1.1").
    assert "Cipher is (NONE)" in old.stdout, old.stdout + old.stderr
    for version, flag in (("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")):
        new = s_client(stack, flag, "-CAfile", ca, "-verify_return_error")
        assert new.returncode == 0, new.stdout + new.stderr
        assert f"Protocol  : {version}" in new.stdout or f"New, {version}" in new.stdout
        assert "Verify return code: 0 (ok)" in new.stdout
    names = sh(
        f"openssl s_client -connect 127.0.0.1:{stack.port} </dev/null 2>/dev/null | "
        "openssl x509 -noout -ext subjectAltName"
    ).stdout
    # @local's name, and the loopback the host's own checks use.
    assert "DNS:localhost" in names and "IP Address:127.0.0.1" in names
    # The CA's key stays on the control machine; the keys are 0600.
    assert oct((stack.ca_dir / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((stack.tls_dir / "key.pem").stat().st_mode & 0o777) == "0o600"
    assert not list(stack.project_dir.rglob("ca-key.pem"))


def test_plain_http_on_the_tls_port_is_refused(stack):
    for header in ([], ["-H", f"X-Chroma-Token: {stack.token}"]):
        plain = subprocess.run(
            ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *header,
             f"http://127.0.0.1:{stack.port}/api/v2/heartbeat"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        body, _, status = plain.stdout.rpartition("\n")
        assert status == "400", plain.stdout + plain.stderr
        assert "nanosecond heartbeat" not in body
        assert "speaks TLS only" in body


def client(stack: Stack, ca: Path, host: str = "localhost"):
    import chromadb
    from chromadb.config import Settings

    return chromadb.HttpClient(
        host=host,
        port=stack.port,
        ssl=True,
        headers={"X-Chroma-Token": stack.token},
        settings=Settings(chroma_server_ssl_verify=str(ca)),
    )


def test_chromadb_client_over_tls_with_the_ca_and_the_token(stack):
    tls_client = client(stack, stack.ca_dir / "ca.pem")
    collection = tls_client.get_or_create_collection("tls", embedding_function=None)
    ids = [f"r{i}" for i in range(20)]
    collection.add(ids=ids, embeddings=[[float(i), 1.0] for i in range(20)])
    assert sorted(collection.get(include=[])["ids"]) == sorted(ids)
    assert collection.count() == 20
    # Without the CA the client refuses the certificate.
    with pytest.raises(Exception) as refused:
        client(stack, Path("/etc/ssl/certs/ca-certificates.crt")).heartbeat()
    chain, error = [], refused.value
    while error is not None:
        chain.append(repr(error))
        error = error.__cause__ or error.__context__
    assert "CERTIFICATE_VERIFY_FAILED" in " ".join(chain)


def records(stack: Stack) -> dict[str, list[str]]:
    """Every collection's sorted record ids, read by the real client over TLS."""
    tls_client = client(stack, stack.ca_dir / "ca.pem")
    return {
        found.name: sorted(
            tls_client.get_collection(found.name, embedding_function=None).get(include=[])["ids"]
        )
        for found in tls_client.list_collections()
    }


def test_proof_backup_and_restore_read_chroma_through_the_tls_port(stack, tmp_path):
    # The host tools read Chroma at https://127.0.0.1:<port> with the CA and the name the
    # deploy wrote in secrets/tls (files/chroma_inventory.py): the proof's canary, the
    # restore's verification against the manifest, and the fact that sees it done.
    written = client(stack, stack.ca_dir / "ca.pem").get_or_create_collection(
        "kept", embedding_function=None
    )
    ids = [f"kept-{i}" for i in range(12)]
    written.upsert(ids=ids, embeddings=[[float(i), 2.0] for i in range(12)],
                   documents=[f"kept record {i}" for i in range(12)])  # fmt: skip
    before = records(stack)
    assert before["kept"] == sorted(ids)
    proof = run_deploy(stack.data, deploy_file="prove.py", env=stack.env, timeout=600)
    stack.outputs.append(proof.output)  # type: ignore[attr-defined]
    assert proof.returncode == 0, proof.output
    assert "persistence proof: pass" in proof.output
    assert records(stack) == before
    data = {**stack.data, "chroma_backup_dir": str(tmp_path / "backups")}
    backup = run_deploy(data, deploy_file="backup.py", env=stack.env, timeout=600)
    stack.outputs.append(backup.output)  # type: ignore[attr-defined]
    assert backup.returncode == 0, backup.output
    archive = next((tmp_path / "backups").glob(f"{stack.name}-*.tar.gz"))
    kept = client(stack, stack.ca_dir / "ca.pem").get_collection("kept", embedding_function=None)
    kept.delete(ids=ids[:5])
    assert records(stack) != before
    restore = {**data, "chroma_restore_archive": str(archive)}
    restored = run_deploy(restore, deploy_file="restore.py", env=stack.env, timeout=600)
    stack.outputs.append(restored.output)  # type: ignore[attr-defined]
    assert restored.returncode == 0, restored.output
    assert f"restored {archive}: verified against its manifest" in restored.output
    assert records(stack) == before
    # The same archive again: the fact reads the server over TLS and finds it restored.
    again = run_deploy(restore, deploy_file="restore.py", env=stack.env, timeout=600)
    assert again.returncode == 0, again.output
    assert again.result["totals"]["success"] == 0, again.output
    print(f"records: {sum(map(len, before.values()))} before the proof and the backup, "
          f"{sum(map(len, records(stack).values()))} after the restore")  # fmt: skip


def host_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """One of files/'s host tools, run as the operations run it on the host."""
    return subprocess.run(
        ["python3", str(Path(__file__).resolve().parents[2] / "files" / args[0]), *args[1:]],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_migrations_verification_and_the_vector_sample_read_through_the_tls_port(stack, tmp_path):
    # A migration's check: the copied data's inventory (here the data dir's own, read from
    # a copy of its SQLite file) against the server through the published TLS port.
    written = client(stack, stack.ca_dir / "ca.pem").get_or_create_collection(
        "checked", embedding_function=None
    )
    written.upsert(ids=[f"checked-{i}" for i in range(8)],
                   embeddings=[[float(i), 3.0] for i in range(8)])  # fmt: skip
    data_dir = stack.project_dir / "chroma_data"
    sqlite = f"sqlite:{data_dir}/chroma.sqlite3"
    before = json.loads(host_tool("chroma_inventory.py", sqlite).stdout)
    assert before["collections"]["default_tenant/default_database/checked"]["count"] == 8
    counted = sum(item["count"] for item in before["collections"].values())
    record = tmp_path / "migration-pending.json"
    record.write_text(json.dumps({"kind": "volume", "subject": "tls-check", "before": before}))
    common = ["--record", str(record), "--url", f"https://127.0.0.1:{stack.port}",
              "--token-file", str(stack.project_dir / "secrets" / "chroma-token.env"),
              "--data-dir", str(data_dir), "--project-dir", str(stack.project_dir),
              "--compose-file", str(stack.project_dir / "docker-compose.yml")]  # fmt: skip
    # Without the proxy's CA it cannot read the server: the record stays pending.
    unverified = host_tool("chroma_safety.py", "verify", *common)
    assert unverified.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
    assert "nothing was changed" in unverified.stderr and record.exists()
    verified = host_tool("chroma_safety.py", "verify", *common, "--tls-dir", str(stack.tls_dir))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert (
        f"volume tls-check verified: {len(before['collections'])} collections, {counted} records"
        in verified.stdout
    )
    assert (tmp_path / "migrated-tls-check.json").exists() and not record.exists()
    # An upgrade's vector sample of the old server, read through the same port.
    out = tmp_path / "vectors.json"
    sampled = host_tool(
        "chroma_safety.py", "sample-vectors", "--url", f"https://127.0.0.1:{stack.port}",
        "--token-file", str(stack.project_dir / "secrets" / "chroma-token.env"),
        "--tls-dir", str(stack.tls_dir), "--sqlite", str(data_dir / "chroma.sqlite3"),
        "--out", str(out), "--version", "1.5.9",
    )  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr
    assert "vectors of a sample of records read from Chroma 1.5.9" in sampled.stdout
    sample = json.loads(out.read_text())["collections"]
    assert {key: len(ids) for key, ids in sample.items()} == {
        key: min(item["count"], 64) for key, item in before["collections"].items()
    }
    print(f"migration check over TLS: {counted} records in {len(before['collections'])} "
          "collections, equal; vector sample of them read")  # fmt: skip


def test_up_shs_summary_reads_the_heartbeat_through_the_tls_port(stack):
    # scripts/up.sh's closing lines, after a converge: the heartbeat as the deploy reads it.
    root = Path(__file__).resolve().parents[2]
    data = [item for key, value in stack.data.items() for item in ("--data", f"{key}={value}")]
    said = subprocess.run(
        [sys.executable, "-m", "plumbing.summary", "-y", "@local", "deploy.py", *data],
        cwd=root, env={**stack.env, "PYTHONPATH": str(root)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert said.returncode == 0, said.stderr
    assert "Chroma 1.5.9 is up and healthy" in said.stderr
    assert f"URL:          https://127.0.0.1:{stack.port}" in said.stderr


class Loop(threading.Thread):
    """Requests through the proxy over TLS until stopped: new and kept-alive connections."""

    def __init__(self, stack: Stack, ca: Path) -> None:
        super().__init__(daemon=True)
        self.stack, self.ca = stack, ssl.create_default_context(cafile=str(ca))
        self.done = threading.Event()
        self.ok = 0
        self.failed: list[str] = []

    def run(self) -> None:
        url = f"https://localhost:{self.stack.port}/api/v2/heartbeat"
        headers = {"X-Chroma-Token": self.stack.token}
        with httpx.Client(verify=self.ca, headers=headers, timeout=10) as kept:
            while not self.done.is_set():
                for use in (kept, None):
                    try:
                        if use is None:
                            answer = httpx.get(url, verify=self.ca, headers=headers, timeout=10)
                        else:
                            answer = use.get(url)
                        if answer.status_code == 200:
                            self.ok += 1
                        else:
                            self.failed.append(f"HTTP {answer.status_code}")
                    except httpx.HTTPError as error:
                        self.failed.append(repr(error))


def test_drift_reports_a_certificate_due_for_renewal_and_its_end_as_a_metric(stack, tmp_path):
    textfile = tmp_path / "chroma.prom"
    clean = run_drift(stack.data, "--textfile", str(textfile), env=stack.env)
    stack.outputs.append(clean.output)  # type: ignore[attr-defined]
    assert clean.returncode == 0, clean.output
    end = sh(f"openssl x509 -in '{stack.tls_dir / 'cert.pem'}' -noout -enddate").stdout
    expected = calendar.timegm(
        time.strptime(" ".join(end.split("=", 1)[1].split()), "%b %d %H:%M:%S %Y %Z")
    )
    metric = [
        line for line in textfile.read_text().splitlines()
        if line.startswith("chroma_deploy_tls_cert_expiry_timestamp_seconds{")
    ]  # fmt: skip
    assert len(metric) == 1 and float(metric[0].split()[-1]) == expected
    # Renew days above the certificate's year: due for renewal, said by drift.
    due = run_drift({**stack.data, "chroma_tls_renew_days": 400}, "--no-color", env=stack.env)
    assert due.returncode != 0
    assert "tls_certificate" in due.output and "valid beyond 400 days" in due.output


def test_renewal_reaches_nginx_by_a_reload_without_a_failed_request(stack):
    # Renew days above the certificate's year: this run issues a new one.
    issued = stack.ca_dir / "hosts" / "local" / "cert.pem"
    old = stack.file_fingerprint(issued)
    renew = {**stack.data, "chroma_tls_renew_days": 400}
    before_ids = stack.container_ids()
    loop = Loop(stack, stack.ca_dir / "ca.pem")
    loop.start()
    time.sleep(1)
    result = run_deploy(renew, env=stack.env)
    time.sleep(2)
    loop.done.set()
    loop.join(30)
    stack.outputs.append(result.output)  # type: ignore[attr-defined]
    assert result.returncode == 0, result.output
    assert "reloading nginx in the proxy" in result.output
    assert stack.file_fingerprint(issued) != old
    assert stack.served_fingerprint() == stack.file_fingerprint(issued)
    assert stack.container_ids() == before_ids
    print(f"renewal: {loop.ok} requests during the deploy, {len(loop.failed)} failed")
    assert loop.ok > 20
    assert loop.failed == []
    # With the default renew days the new certificate is kept: nothing changes.
    again = run_deploy(stack.data, env=stack.env)
    assert again.returncode == 0, again.output
    assert again.changed_operations == [], again.output


def test_files_mode_certificate_reaches_nginx_by_a_reload(stack, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    sh(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
        f"-subj /CN=kb.test -addext subjectAltName=DNS:kb.test "
        f"-keyout '{key}' -out '{cert}' 2>/dev/null"
    )
    data = {key_: value for key_, value in stack.data.items() if key_ != "chroma_tls_ca_dir"}
    data.update(chroma_tls="files", chroma_tls_cert_file=str(cert), chroma_tls_key_file=str(key))
    before_ids = stack.container_ids()
    result = run_deploy(data, env=stack.env)
    stack.outputs.append(result.output)  # type: ignore[attr-defined]
    assert result.returncode == 0, result.output
    assert "reloading nginx in the proxy" in result.output
    assert stack.served_fingerprint() == stack.file_fingerprint(cert)
    assert stack.container_ids() == before_ids
    # The host's checks ask for the certificate's own name (curl --resolve).
    assert (stack.tls_dir / "name").read_text() == "kb.test\n"
    again = run_deploy(data, env=stack.env)
    assert again.changed_operations == [], again.output
    # A client that trusts that certificate reaches Chroma by its name (real curl).
    header = tmp_path / "header"
    header.write_text(f"X-Chroma-Token: {stack.token}\n")
    answer = sh(
        f"curl -sS --cacert '{cert}' --resolve kb.test:{stack.port}:127.0.0.1 "
        f"-H @'{header}' https://kb.test:{stack.port}/api/v2/heartbeat"
    ).stdout
    assert "nanosecond heartbeat" in answer
    # Back to the internal CA for the tests after this one: a reload again.
    back = run_deploy(stack.data, env=stack.env)
    assert back.returncode == 0, back.output


def test_no_key_in_any_output_inspect_or_process_list(stack):
    keys = [
        stack.tls_dir.joinpath("key.pem").read_text(),
        stack.ca_dir.joinpath("ca-key.pem").read_text(),
    ]
    bodies = [line for key in keys for line in key.splitlines() if "PRIVATE KEY" not in line]
    assert bodies
    inspect = sh(
        f"docker inspect $(docker ps -aq --filter label=com.docker.compose.project={stack.name})"
    ).stdout
    processes = sh("ps auxww").stdout
    drift = run_drift(stack.data, "-vvv", env=stack.env)
    for text in (*stack.outputs, inspect, processes, drift.output):  # type: ignore[attr-defined]
        for line in bodies:
            assert line not in text
        assert stack.token not in text
