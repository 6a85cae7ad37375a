"""0.6.3 -> 1.x with real data: backed up first, verified before it is published, mount target
moved; a live writer does not fail it, and the vector sample catches swapped vectors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import chromadb
import click
import httpx
import pytest
import yaml
from conftest import (
    PYINFRA,
    ROOT,
    base_data,
    chroma_client,
    converge,
    free_port,
    read_fact,
    read_records,
    run_deploy,
    run_drift,
    sh,
    wait_for_heartbeat,
    write_records,
)

from declaration.versions import MIGRATION_MODE
from facts.schema_guard import SchemaRefusal

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_upgrade_from_0_6_keeps_every_record_and_a_downgrade_is_refused(project, tmp_path):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"))
    client = chroma_client(port)  # records written by the 0.6 server
    for collection_name in ("faq", "docs"):
        collection = client.create_collection(collection_name, embedding_function=None)
        collection.add(
            ids=[f"{collection_name}-{i}" for i in range(150)],
            embeddings=[[float(i % 5), float(i % 7), 1.0] for i in range(150)],
            metadatas=[{"i": i} for i in range(150)],
        )
    before = read_records(port)

    # The new server validates its schema (the default on 1.x: it refuses a migration it
    # would make itself): the rehearsal and the verification before publishing migrate.
    validating = dict(data, chroma_version="1.5.9")
    upgraded = converge(validating)
    checked = "Upgraded data verified by the new version before the stack is published"
    assert checked in upgraded.changed_operations  # before `up`, never after it
    assert "Migrated data verified on the bind mount" not in upgraded.changed_operations
    assert read_records(port) == before
    env = json.loads(
        subprocess.check_output(
            ["docker", "inspect", "--format", "{{json .Config.Env}}", f"{name}-chroma-1"]
        )
    )
    assert f"{MIGRATION_MODE}=validate" in env
    chroma = yaml.safe_load((project_dir / "docker-compose.yml").read_text())["services"]["chroma"]
    assert chroma["volumes"][0]["source"] == "./chroma_data"
    assert chroma["volumes"][0]["target"] == "/data"
    backups = list((tmp_path / "backups").glob(f"{name}-*-before-1.5.9.tar.gz"))
    assert len(backups) == 1
    assert (project_dir / ".chroma-deploy" / "upgraded-0.6.3-to-1.5.9.json").is_file()

    compose = (project_dir / "docker-compose.yml").read_text()
    refused = run_deploy(dict(data, chroma_version="0.6.3"))
    assert refused.returncode == 1
    said = click.unstyle(refused.output)  # once, as `<host>: <key>: ...`, and nothing more
    assert said.count("@local: chroma_version: 0.6.3 is older than the 1.5.9 deployed") == 1
    assert "No hosts remaining" not in said and "executed 0 commands" not in said, said
    assert (project_dir / "docker-compose.yml").read_text() == compose
    assert read_records(port) == before

    # The way back: restoring the pre-upgrade archive brings back the version it was
    # taken with, and the data as it was then (not migrated forward again).
    chroma_client(port).get_collection("faq", embedding_function=None).delete(ids=["faq-0"])
    back = dict(data, chroma_restore_archive=str(backups[0]))
    restored = run_deploy(back, deploy_file="restore.py", timeout=600)
    assert restored.returncode == 0, restored.output
    assert "keep chroma_version=0.6.3" in restored.output
    chroma = yaml.safe_load((project_dir / "docker-compose.yml").read_text())["services"]["chroma"]
    assert chroma["image"].endswith(":0.6.3")
    assert chroma["volumes"][0]["target"] == "/chroma/chroma"
    version = httpx.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=10).json()
    assert version == "0.6.3"
    assert read_records(port) == before
    again = run_deploy(back, deploy_file="restore.py", timeout=600)  # nothing changed since
    assert again.returncode == 0 and again.result["totals"]["success"] == 0, again.output
    converge(dict(data, chroma_version="0.6.3"))  # the version the user now keeps


BROKEN = """\
FROM chromadb/chroma:1.5.9
ENTRYPOINT ["/bin/bash", "-c", "echo 'InternalError: no such column: x' >&2; exit 1"]
"""


@pytest.fixture
def broken_image():
    """chromadb/chroma:1.99.0 that cannot open the data, as an early 1.0 failed on 0.6.3 data."""
    tag = "chromadb/chroma:1.99.0"
    built = subprocess.run(
        ["docker", "build", "-t", tag, "-"], input=BROKEN, text=True, capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)  # the test's own


def test_a_failed_rehearsal_stops_the_upgrade_and_the_old_stack_keeps_serving(
    project, tmp_path, broken_image
):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(data)
    collection = chroma_client(port).create_collection("kept", embedding_function=None)
    collection.add(
        ids=[f"k{i}" for i in range(100)], embeddings=[[float(i), 1.0] for i in range(100)]
    )
    before = read_records(port)
    compose = (project_dir / "docker-compose.yml").read_text()

    failed = run_deploy(dict(data, chroma_version="1.99.0"))
    assert failed.returncode != 0
    assert "upgrade rehearsal FAILED, nothing was switched" in failed.output
    assert "InternalError" in failed.output  # the new server's own words
    assert (project_dir / "docker-compose.yml").read_text() == compose
    assert read_records(port) == before  # the live stack serves the old data again
    assert not (project_dir / ".chroma-deploy" / "rehearsal").exists()
    rehearsal = f"label=chroma-deploy.rehearsal={project_dir}/chroma_data"
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", rehearsal],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert leftovers.stdout == ""
    converge(data)  # still the old version, and nothing to change


# serial: it must see the switch's gap before the new stack is up; a busy machine closes it.
@pytest.mark.serial
def test_no_write_can_land_between_the_backup_and_the_switch(project, tmp_path):
    """Finding 4: the backup restarted the old stack before the switch; writes made then
    were missing from the archive the user is told to restore."""
    project_dir, name = project
    backups = tmp_path / "backups"
    data = base_data(project_dir, name, chroma_backup_dir=str(backups))
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"))
    collection = chroma_client(port).create_collection("before", embedding_function=None)
    collection.add(ids=["b1"], embeddings=[[1.0, 2.0]])
    args = [PYINFRA, "-y", "@local", "deploy.py"]
    for key, value in dict(data, chroma_version="1.5.9").items():
        args += ["--data", f"{key}={value}"]
    upgrade = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    archive_seen = None
    for _ in range(1200):  # the archive gets its final name once it is complete
        archive_seen = next(iter(backups.glob("*-before-1.5.9.tar.gz")), None)
        if archive_seen or upgrade.poll() is not None:
            break
        time.sleep(0.05)
    assert archive_seen, "no pre-upgrade archive appeared"
    with pytest.raises(httpx.TransportError):  # nothing answers to write to
        httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
    output, _ = upgrade.communicate(timeout=900)
    assert upgrade.returncode == 0, output
    assert read_records(port) == {"before": ["b1"]}


class LiveWriter(threading.Thread):
    """Adds one record at a time through the real client, retrying the same id on any error.

    A write counts as acknowledged only once ``add`` returned. Bounded by ``limit`` records
    and ``seconds``; :meth:`finish` lets it write a few more, then stops it.
    """

    def __init__(self, port: int, collection: str, limit: int, seconds: float):
        super().__init__(daemon=True)
        self.port, self.collection, self.limit = port, collection, limit
        self.deadline = time.monotonic() + seconds
        self.acknowledged: list[str] = []
        self.errors = 0
        self.stop = threading.Event()

    def finish(self, more: int, seconds: float) -> None:
        until, deadline = len(self.acknowledged) + more, time.monotonic() + seconds
        while len(self.acknowledged) < until and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.1)
        self.stop.set()
        self.join(timeout=60)
        assert not self.is_alive()

    def run(self) -> None:
        collection = None
        i = 0
        while not self.stop.is_set() and i < self.limit and time.monotonic() < self.deadline:
            try:
                if collection is None:
                    client = chroma_client(self.port)
                    collection = client.get_collection(self.collection, embedding_function=None)
                collection.add(
                    ids=[f"w{i:05d}"], embeddings=[[float(i), float(i % 13), 1.0]],
                    documents=[f"written live {i}"], metadatas=[{"i": i}],
                )  # fmt: skip
            except Exception:  # refused, reset, 5xx while the stack switches: the same id again
                self.errors += 1
                collection = None
                time.sleep(0.2)
                continue
            self.acknowledged.append(f"w{i:05d}")
            i += 1
            time.sleep(0.03)


def test_an_upgrade_under_live_writes_is_verified_before_it_is_published(project, tmp_path):
    """Issue 27 item 8: a writer kept adding while 0.6.3 -> 1.5.9 ran; every write survived,
    but the verification counted the live server after writes resumed, marked the upgrade
    failed, stopped the stack and advised a restore that would drop those writes."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"))
    collection = chroma_client(port).create_collection("live", embedding_function=None)
    collection.add(
        ids=[f"s{i:03d}" for i in range(100)],
        embeddings=[[float(i % 5), float(i % 7), 1.0] for i in range(100)],
        documents=[f"seeded {i}" for i in range(100)],
    )  # fmt: skip
    seeded = read_records(port)["live"]
    writer = LiveWriter(port, "live", limit=1500, seconds=420)
    writer.start()
    while len(writer.acknowledged) < 20:  # the writer is writing before the upgrade starts
        time.sleep(0.1)
    upgraded = run_deploy(dict(data, chroma_version="1.5.9"))
    writer.finish(more=30, seconds=30)  # a few more writes to the new server
    said = click.unstyle(upgraded.output)
    print(
        f"seeded {len(seeded)}, acknowledged {len(writer.acknowledged)} live writes "
        f"({writer.errors} retried)"
    )
    assert upgraded.returncode == 0, [line for line in said.splitlines() if "FAILED" in line]
    after = read_records(port)["live"]
    print(f"{len(after)} records after")
    assert set(writer.acknowledged) <= set(after)  # every acknowledged write survived
    assert set(seeded) <= set(after)
    state = project_dir / ".chroma-deploy"
    assert not list(state.glob("failed-*")), upgraded.output
    assert (state / "upgraded-0.6.3-to-1.5.9.json").is_file()
    verified = [line for line in said.splitlines() if "upgrade 0.6.3 -> 1.5.9 verified" in line]
    print("\n".join(verified))
    assert len(verified) == 1, said
    assert "before it was published" in verified[0]
    assert "sampled vectors" in verified[0]
    again = run_deploy(dict(data, chroma_version="1.5.9"))  # the upgrade run's second run
    assert again.returncode == 0 and again.changed_operations == [], again.output


def swap_bytes(directory: Path, first: bytes, second: bytes) -> int:
    """Swap every occurrence of two same-length byte strings in every file under ``directory``."""
    assert len(first) == len(second)
    swapped = 0
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        content = path.read_bytes()
        if first not in content and second not in content:
            continue
        swapped += content.count(first) + content.count(second)
        marker = b"\0swap\0" * 4  # in neither: a three-way exchange
        path.write_bytes(content.replace(first, marker[: len(first)]).replace(second, first)
                         .replace(marker[: len(first)], second))  # fmt: skip
    return swapped


def test_the_vector_sample_check_catches_a_swapped_vector_on_a_copy(tmp_path):
    """Issue 27 item 4: a data dir whose counts, ids, documents and metadata are all there but
    in which a record returns another record's vector passed every check we had."""
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    name = f"cdtest-vectors-{os.getpid()}"
    vectors = [[1000.0 + i, -500.0 - i * 0.5, 0.125 * i + 0.0625] for i in range(50)]
    try:
        subprocess.run(
            ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000",
             "-v", f"{data}:/data", "chromadb/chroma:1.5.9"],
            check=True, capture_output=True,
        )  # fmt: skip
        wait_for_heartbeat(port)
        collection = chroma_client(port).create_collection("mix", embedding_function=None)
        collection.add(
            ids=[f"mix-{i}" for i in range(50)], embeddings=vectors,
            documents=[f"record {i}" for i in range(50)], metadatas=[{"i": i} for i in range(50)],
        )  # fmt: skip
        sample = tmp_path / "upgrade-vectors.json"
        read = [sys.executable, str(ROOT / "files" / "chroma_inventory.py"),
                f"http://127.0.0.1:{port}", "--vector-sample"]  # fmt: skip
        sample.write_text(subprocess.run(read, check=True, capture_output=True, text=True).stdout)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)  # its data stays
    safety = [sys.executable, str(ROOT / "files" / "chroma_safety.py")]
    manifest = tmp_path / "before.json"
    inventory = [sys.executable, str(ROOT / "files" / "chroma_inventory.py")]
    read = subprocess.run([*inventory, f"sqlite:{data / 'chroma.sqlite3'}"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    manifest.write_text(read.stdout)
    copy = tmp_path / "copy"
    shutil.copytree(data, copy, symlinks=True)
    # mix-26 and mix-37 trade vectors in the copy (in whatever file holds them: the
    # write-ahead log in chroma.sqlite3 or the HNSW segment); all 50 records are sampled.
    assert swap_bytes(copy, *(struct.pack("<3f", *vectors[i]) for i in (26, 37))) >= 2
    state = tmp_path / ".chroma-deploy"
    state.mkdir()
    record = state / "upgrade-pending.json"

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        record.write_text(json.dumps({
            "kind": "upgrade", "subject": "1.5.9", "from": "1.5.9", "to": "1.5.9",
            "backup": "the archive", "before": json.loads(manifest.read_text()),
        }))  # fmt: skip
        return subprocess.run(
            [*safety, "verify-upgrade", "--record", str(record), "--data-dir", str(copy),
             "--image", "chromadb/chroma:1.5.9", "--persist-path", "/data", "--uid", "0",
             "--gid", "0", "--timeout", "120", *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    # Another container on the data dir: the check never opens it a second time.
    sharing = f"{name}-sharing"
    try:
        subprocess.run(
            ["docker", "run", "-d", "--name", sharing, "-v", f"{copy}:/data",
             "--entrypoint", "/bin/sleep", "chromadb/chroma:1.5.9", "300"],
            check=True, capture_output=True,
        )  # fmt: skip
        refused = check("--vectors", str(sample))
    finally:
        subprocess.run(["docker", "rm", "-f", sharing], capture_output=True)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"{sharing} runs on {copy}, and two servers must never open one data dir" in (
        refused.stderr
    )
    assert record.is_file() and not list(state.glob("upgraded-*"))
    blind = check()  # what the verification compared before: counts, ids, documents, metadata
    print(blind.stdout, blind.stderr)
    assert blind.returncode == 0 and "vectors not compared" in blind.stdout
    (state / "upgraded-1.5.9-to-1.5.9.json").unlink()
    caught = check("--vectors", str(sample))
    print(caught.stdout, caught.stderr)
    assert caught.returncode == 3
    assert "default_tenant/default_database/mix: mix-26 returns the vector mix-37 had" in (
        caught.stderr
    )
    assert "mix-37 returns the vector mix-26 had" in caught.stderr
    assert list(state.glob("failed-upgrade-*.json")) and not record.exists()
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=chroma-deploy.upgrade-check={copy}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert leftovers.stdout == ""


def test_behind_the_auth_proxy_the_vectors_are_sampled_with_the_token(project, tmp_path):
    """The sample is read through the proxy with the token file; the check reaches the new
    server at its bridge address, although behind the proxy it listens on loopback only."""
    project_dir, name = project
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "CHROMA_AUTH_TOKEN": token}
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"),
                     chroma_auth_proxy=True, chroma_upgrade_rehearsal=False)  # fmt: skip
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"), env=env)
    client = chromadb.HttpClient(host="127.0.0.1", port=port, headers={"X-Chroma-Token": token})
    collection = client.create_collection("kept", embedding_function=None)
    collection.add(ids=[f"k{i}" for i in range(40)],
                   embeddings=[[float(i), 0.5, -1.0] for i in range(40)])  # fmt: skip
    upgraded = converge(dict(data, chroma_version="1.5.9"), env=env)
    said = click.unstyle(upgraded.output)
    assert token not in said
    assert (
        "upgrade 0.6.3 -> 1.5.9 verified before it was published: 1 collections, 40 records; "
        "counts, ids, documents, metadata and 40 sampled vectors equal"
    ) in said, said
    assert sorted(client.get_collection("kept", embedding_function=None).get()["ids"]) == sorted(
        f"k{i}" for i in range(40)
    )


def content_digest(database: Path) -> str:
    """The database's schema and rows, but the row a refused start writes in acquire_write (its
    own lock table: tried on 1.5.9, the only change a refused start makes)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        lines = [
            line for line in db.iterdump() if not line.startswith('INSERT INTO "acquire_write"')
        ]
    db.close()
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.fixture
def hand_set_image():
    """The 1.5.9 build under a newer tag: an image set by hand in the compose file (the test's
    own tag, removed after it; the image itself keeps its 1.5.9 tag)."""
    tag = "chromadb/chroma:1.99.1"
    subprocess.run(["docker", "tag", "chromadb/chroma:1.5.9", tag], check=True)
    yield tag
    subprocess.run(["docker", "image", "rm", tag], capture_output=True)


def test_the_schema_guard_refuses_data_an_image_would_migrate_and_the_upgrade_applies_it(
    project, tmp_path, hand_set_image
):
    """1.x validates its schema by default. A new stack still starts (its schema is made
    first, and the compose file does not change between runs); an image set by hand on data
    it would migrate refuses to start, and drift and the deploy each say so in one line,
    the data untouched; chroma-deploy's upgrade, after its backup and rehearsal, applies it."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    first = converge(data)
    assert "Chroma's schema in the data dir before its server validates it" in (
        first.changed_operations
    )
    made = re.findall(r"before the stack validates it \(([\d.]+) s\)", first.output)
    assert len(made) == 1, first.output
    print(f"schema made in {made[0]} s")  # the first start's cost: in the test's log
    env = json.loads(
        subprocess.check_output(
            ["docker", "inspect", "--format", "{{json .Config.Env}}", f"{name}-chroma-1"]
        )
    )
    assert f"{MIGRATION_MODE}=validate" in env
    write_records(port, per_collection=40)
    before = read_records(port)

    # The data one migration behind the image, as a release older than it left it: sysdb
    # migration 10 (collections.schema_str) undone, and its row gone.
    compose_file = project_dir / "docker-compose.yml"
    sh(f"docker compose -f {compose_file} stop")
    database = project_dir / "chroma_data" / "chroma.sqlite3"
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT MAX(version) FROM migrations WHERE dir = 'sysdb'").fetchone() == (
            10,
        )
        db.execute("DELETE FROM migrations WHERE dir = 'sysdb' AND version = 10")
        db.execute("ALTER TABLE collections DROP COLUMN schema_str")
    db.close()
    digest = content_digest(database)
    # The image changed by hand, and the stack started by hand.
    compose_file.write_text(
        compose_file.read_text().replace("chromadb/chroma:1.5.9", hand_set_image)
    )
    sh(f"docker compose -f {compose_file} up -d")
    deadline = time.monotonic() + 60
    while not read_fact(SchemaRefusal, container=f"{name}-chroma-1")["refused"]:
        assert time.monotonic() < deadline, "1.99.1 did not refuse the data"
        time.sleep(1)
    assert content_digest(database) == digest  # refused, not migrated

    drift = run_drift(data, "--no-color")
    assert drift.returncode == 2, drift.output
    lines = [line for line in drift.output.splitlines() if "schema_refused" in line]
    assert len(lines) == 1, drift.output
    assert f"{name}-chroma-1: starts on its data -> {hand_set_image} refused to start" in lines[0]
    assert "run the deploy with chroma_version=1.99.1 so chroma-deploy backs up" in lines[0]

    refused = run_deploy(data)  # chroma_version still says 1.5.9
    assert refused.returncode == 1
    said = click.unstyle(refused.output)
    assert (
        said.count(
            "@local: chroma_version: Chroma 1.99.1 (docker-compose.yml names it, "
            "chroma_version says 1.5.9) refused to start on"
        )
        == 1
    ), said
    assert "deploy with chroma_version=1.99.1 so chroma-deploy backs up" in said
    assert content_digest(database) == digest

    applied = converge(dict(data, chroma_version="1.99.1"))
    assert "Chroma 1.99.1 refused to start on" in applied.output  # the deploy says why
    assert "upgrade 1.5.9 -> 1.99.1 verified before it was published" in applied.output
    assert read_records(port) == before
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        assert db.execute("SELECT MAX(version) FROM migrations WHERE dir = 'sysdb'").fetchone() == (
            10,
        )
    db.close()
    assert len(list((tmp_path / "backups").glob(f"{name}-*-before-1.99.1.tar.gz"))) == 1
