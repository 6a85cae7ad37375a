"""rollout.py on three SSH test hosts: a 0.6.3 -> 1.5.9 upgrade, canary first, gated.

The hosts are cdfleet1-3 from tests/harness/ssh_hosts.py (cdfleet2 reached as a sudo
user), each with its own engine, a second project (/srv/rollout, port 8100, behind
the auth proxy) next to the fleet tests' one, running 0.6.3 with records written by
the real chromadb client through an SSH tunnel and the proxy's token. The three
scenarios share that state, in the order a user would meet them:

(b) the canary's proof fails for real: after its deploy, its data dir is mounted
    read-only over itself, the way a filesystem turns read-only under a running
    server (which keeps its own mount, so a heartbeat alone would still pass);
    the proof's down/up cannot open the database again. The rollout halts, the
    other hosts still run 0.6.3 with their data.
(c) fixed (unmounted); the canary passes, the second batch's host refuses (a
    file where its fallback dir should be) and the third is never touched.
(a) fixed; the same command resumes: the canary is a no-op, the others are
    upgraded in batch order (read from timestamps on the hosts), every record
    is still there; a second run changes nothing.

The upgrade's rehearsal is off here (chroma_upgrade_rehearsal=false, saves ~3.5 s a
host): it is tested in test_upgrade.py, and not what a rollout proves. The images
are loaded into the hosts' engines with `docker save | docker exec docker load`
(shipping them, tested in test_fleet.py, would cost about a minute more).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import chromadb
import jsonschema
import pytest
from conftest import ROOT, DeployRun, free_port, run_deploy
from harness.ssh_hosts import BY_NAME, Fleet, SshHost, ensure_fleet

# Not serial: under pytest-xdist it runs in test_fleet.py's worker, after it, on the
# hosts it made (conftest.SAME_WORKER). The watcher that fails the canary's proof waits
# on the host for the upgraded server to be healthy, then mounts in well under a second;
# the proof comes after rollout.py has started another pyinfra process and the heartbeat.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

NAMES = ("cdfleet1", "cdfleet2", "cdfleet3")
PROJECT = "/srv/rollout"
PORT = 8100
CONTAINER = "rollout-chroma-1"
BACKUPS = "/var/backups/cdrollout"
IMAGES = ("chromadb/chroma:0.6.3", "chromadb/chroma:1.5.9", "chroma-deploy/auth-proxy:9")
# pull finds the images the fixture loaded: another test on this machine may move the
# control machine's chromadb/chroma:1.5.9 tag for a moment, which ship would follow.
UPGRADE = ("--data", "chroma_version=1.5.9", "--data", "chroma_upgrade_rehearsal=false",
           "--data", "chroma_image_source=pull")  # fmt: skip
SCHEMA = json.loads((ROOT / "schemas" / "rollout.schema.json").read_text())
RECORDS = 150  # per collection, two collections per host


@dataclass
class RolloutRun:
    """One rollout.py run: its exit code, its summary (JSON or table) and its progress."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        document = json.loads(self.stdout)
        jsonschema.validate(document, SCHEMA)
        return document

    def host(self, name: str) -> dict:
        return next(host for host in self.summary["hosts"] if host["name"] == name)


@dataclass
class RolloutFleet:
    fleet: Fleet
    inventory: Path
    env: dict[str, str]
    token: str
    records: dict[str, dict[str, list[str]]]  # host -> collection -> ids, before the rollout

    def rollout(self, *args: str) -> RolloutRun:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(ROOT / "rollout.py"), str(self.inventory), *UPGRADE, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=900, env=self.env,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        print(f"rollout.py {' '.join(args)}: exit {done.returncode} in {seconds:.1f} s")
        print(done.stderr + done.stdout)
        return RolloutRun(done.returncode, done.stdout, done.stderr)

    def deploy(self, version: str) -> DeployRun:
        return run_deploy(
            {"chroma_version": version}, env=self.env, inventory=str(self.inventory), timeout=900
        )

    def ssh(self, name: str, command: str) -> str:
        return self.fleet.ssh(BY_NAME[name], command).stdout.strip()

    def read_records(self, *names: str) -> dict[str, dict[str, list[str]]]:
        """Every collection's sorted ids on each host, read through an SSH tunnel.

        One host after the other: free_port() is not safe to call from threads.
        """
        found = {}
        for name in names:
            with self.fleet.forward(BY_NAME[name], free_port(), PORT) as port:
                client = self.client(port)
                found[name] = {c.name: ids(client, c.name) for c in client.list_collections()}
        return found

    def write_records(self, name: str) -> None:
        with self.fleet.forward(BY_NAME[name], free_port(), PORT) as port:
            client = self.client(port)
            for collection_name in ("manuals", "tickets"):
                collection = client.create_collection(collection_name, embedding_function=None)
                collection.add(
                    ids=[f"{name}-{collection_name}-{i}" for i in range(RECORDS)],
                    embeddings=[[float(i % 7), float(i % 11), 1.0] for i in range(RECORDS)],
                    metadatas=[{"i": i, "host": name} for i in range(RECORDS)],
                    documents=[f"{collection_name} {i} on {name}" for i in range(RECORDS)],
                )

    def client(self, port: int) -> chromadb.HttpClient:
        return chromadb.HttpClient(
            host="127.0.0.1", port=port, headers={"X-Chroma-Token": self.token}
        )

    def running(self, name: str) -> str:
        """The chroma container's image and health, read with docker on the host."""
        inspect = (
            f"docker inspect -f '{{{{.Config.Image}}}} {{{{.State.Health.Status}}}}' {CONTAINER}"
        )
        return self.ssh(name, inspect)

    def times(self, name: str) -> dict[str, float]:
        """When the compose file was written, the pre-upgrade backup taken, and the
        container last started (the proof's `up`): the hosts share this machine's clock."""
        started = self.ssh(name, f"docker inspect -f '{{{{.State.StartedAt}}}}' {CONTAINER}")
        files = self.ssh(
            name,
            f"stat -c %.9Y {PROJECT}/docker-compose.yml; "
            f"stat -c %.9Y {BACKUPS}/rollout-*-before-1.5.9.tar.gz 2>/dev/null || echo 0",
        ).split()
        return {
            "compose": float(files[0]),
            "backup": float(files[1]),
            "started": datetime.fromisoformat(started[:26] + "+00:00").timestamp(),
        }


def ids(client: chromadb.HttpClient, collection: str) -> list[str]:
    return sorted(client.get_collection(collection, embedding_function=None).get(include=[])["ids"])


def preload_images(hosts: tuple[SshHost, ...], work: Path) -> list[SshHost]:
    """The images the hosts' engines lack, from this machine's engine (no ship, no registry):
    saved once, loaded into every host at once. Returns the hosts without an engine yet."""

    def missing(test_host: SshHost) -> list[str]:
        engine = ["docker", "exec", test_host.name, "docker"]
        return [
            image for image in IMAGES
            if subprocess.run([*engine, "image", "inspect", image],
                              capture_output=True).returncode != 0
        ]  # fmt: skip

    without_engine = [
        test_host for test_host in hosts
        if subprocess.run(["docker", "exec", test_host.name, "docker", "info"],
                          capture_output=True).returncode != 0
    ]  # fmt: skip
    lacking = {h.name: missing(h) for h in hosts if h not in without_engine}
    images = sorted({image for found in lacking.values() for image in found})
    if not images:
        return without_engine
    archive = work / "images.tar"
    subprocess.run(["docker", "save", "-o", str(archive), *images], check=True, timeout=600)

    def load(name: str) -> None:
        with archive.open("rb") as source:
            subprocess.run(["docker", "exec", "-i", name, "docker", "load"], stdin=source,
                           check=True, capture_output=True, timeout=600)  # fmt: skip

    try:
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(load, [name for name, found in lacking.items() if found]))
    finally:
        archive.unlink()
    return without_engine


RESET = (
    "if [ -f /run/cdrollout-watcher.pid ]; then kill $(cat /run/cdrollout-watcher.pid) "
    "2>/dev/null; rm -f /run/cdrollout-watcher.pid; fi; "
    f"umount {PROJECT}/chroma_data 2>/dev/null; "
    f"if [ -f {PROJECT}/docker-compose.yml ]; then "
    f"docker compose --project-directory {PROJECT} down --timeout 5; fi; "
    f"rm -rf {PROJECT} {BACKUPS}"  # this test's own throwaway data
)


@pytest.fixture(scope="module")
def rollout_fleet(tmp_path_factory: pytest.TempPathFactory):
    """Three hosts on 0.6.3 behind the auth proxy, each with 300 records of its own."""
    started = time.perf_counter()
    fleet = ensure_fleet()
    hosts = tuple(BY_NAME[name] for name in NAMES)
    for test_host in hosts:
        fleet.ssh(test_host, RESET)
    work = tmp_path_factory.mktemp("rollout")
    without_engine = preload_images(hosts, work)
    loaded = time.perf_counter()
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "CHROMA_AUTH_TOKEN": token}
    shared = {
        "chroma_image_source": "ship", "chroma_project_dir": PROJECT,
        "chroma_compose_project": "rollout", "chroma_port": PORT,
        "chroma_backup_dir": BACKUPS, "chroma_auth_proxy": True,
    }  # fmt: skip
    inventory = fleet.write_inventory(work / "inventory.py", hosts, shared=shared)
    setup = RolloutFleet(fleet, inventory, env, token, {})
    # The starting point, not what is tested: the rollouts below run the deploy twice.
    first = setup.deploy("0.6.3")  # installs an engine where none runs, ships 0.6.3 there
    assert first.returncode == 0, first.output
    if without_engine:
        preload_images(hosts, work)  # now 1.5.9 there too
    for name in NAMES:
        setup.write_records(name)
    setup.records = setup.read_records(*NAMES)
    for name in NAMES:
        assert sum(map(len, setup.records[name].values())) == 2 * RECORDS, name
    print(f"rollout fleet: images {loaded - started:.1f} s, "
          f"0.6.3 with records {time.perf_counter() - loaded:.1f} s")  # fmt: skip
    yield setup
    for test_host in hosts:
        fleet.ssh(test_host, RESET, check=False)


READ_ONLY_AFTER_DEPLOY = f"""
until [ "$(docker inspect -f '{{{{.Config.Image}}}} {{{{.State.Health.Status}}}}' {CONTAINER} \
        2>/dev/null)" = "chromadb/chroma:1.5.9 healthy" ]; do sleep 0.1; done
mount --bind {PROJECT}/chroma_data {PROJECT}/chroma_data
mount -o remount,bind,ro {PROJECT}/chroma_data
date +%s.%N > /run/cdrollout-read-only
"""


@pytest.fixture(scope="module")
def canary_failed(rollout_fleet: RolloutFleet):
    """(b): the canary's data dir turns read-only once its new server runs healthy."""
    setup = rollout_fleet
    compose_before = {name: setup.times(name)["compose"] for name in NAMES}
    # On the host, in the background: waits for the upgraded server, then mounts.
    setup.ssh(
        "cdfleet1",
        "rm -f /run/cdrollout-read-only; setsid timeout 600 sh -c "
        f"{shlex.quote(READ_ONLY_AFTER_DEPLOY)} </dev/null >/dev/null 2>&1 & "
        "echo $! >/run/cdrollout-watcher.pid",
    )
    run = setup.rollout()  # the table, as a person reads it
    return run, compose_before


def test_b_a_canary_that_fails_its_proof_halts_and_the_others_keep_0_6_3_with_their_data(
    rollout_fleet, canary_failed
):
    setup = rollout_fleet
    run, compose_before = canary_failed
    assert run.returncode == 1, run.stdout + run.stderr
    table = run.stdout.splitlines()
    canary_row = next(line for line in table if line.startswith("cdfleet1"))
    assert canary_row.split()[:4] == ["cdfleet1", "canary", "changed", "fail"]
    assert canary_row.endswith("persistence proof: FAIL: the canary did not survive down/up")
    for name in ("cdfleet2", "cdfleet3"):
        row = next(line for line in table if line.startswith(name))
        assert row.endswith("never touched"), row
    assert "never touched: cdfleet2, cdfleet3" in table
    assert table[-1].startswith("halted at cdfleet1 (proof)")
    assert "cdfleet1: heartbeat" not in run.stderr  # the gate stopped at the proof

    # For real on the canary: the read-only mount was there before the proof, and the
    # upgraded server cannot start on it.
    assert setup.ssh("cdfleet1", "cat /run/cdrollout-read-only")
    assert setup.running("cdfleet1").startswith("chromadb/chroma:1.5.9")
    assert "ro," in setup.ssh("cdfleet1", f"grep ' {PROJECT}/chroma_data ' /proc/mounts")
    # The others: never touched, still 0.6.3 and healthy, every record there.
    for name in ("cdfleet2", "cdfleet3"):
        assert setup.times(name)["compose"] == compose_before[name], name
        assert setup.running(name) == "chromadb/chroma:0.6.3 healthy"
    others = setup.read_records("cdfleet2", "cdfleet3")
    assert others == {name: setup.records[name] for name in ("cdfleet2", "cdfleet3")}


@pytest.fixture(scope="module")
def second_batch_failed(rollout_fleet: RolloutFleet, canary_failed):
    """(c): the canary fixed; a file where cdfleet2's fallback dir should be."""
    setup = rollout_fleet
    setup.ssh("cdfleet1", f"umount {PROJECT}/chroma_data")
    setup.ssh(
        "cdfleet2", f"mv {PROJECT}/chroma_db /root/chroma_db.aside && touch {PROJECT}/chroma_db"
    )
    compose_before = setup.times("cdfleet3")["compose"]
    return setup.rollout("--json"), compose_before


def test_c_a_failure_in_the_second_batch_halts_before_the_third(rollout_fleet, second_batch_failed):
    setup = rollout_fleet
    run, compose_before = second_batch_failed
    assert run.returncode == 1
    summary = run.summary
    canary = run.host("cdfleet1")
    assert canary["proven"] and canary["version"] == "1.5.9" and canary["failed_step"] is None
    assert summary["halted"] == {
        "host": "cdfleet2",
        "step": "deploy",
        "operation": None,  # refused before any operation: nothing on the host changed
        "reason": f"chroma_fallback_dir: {PROJECT}/chroma_db is a regular empty file, not a "
        "directory; move it aside (chroma-deploy never deletes anything there), then run again",
    }
    assert summary["summary"]["untouched"] == ["cdfleet3"]
    assert summary["batches"][2]["seconds"] is None
    assert [batch["hosts"] for batch in summary["batches"]] == [[name] for name in NAMES]
    for name in ("cdfleet2", "cdfleet3"):
        assert setup.running(name) == "chromadb/chroma:0.6.3 healthy"
    # Every record on every host, and the canary's proof record removed again.
    assert setup.read_records(*NAMES) == setup.records
    assert setup.times("cdfleet3")["compose"] == compose_before


@pytest.fixture(scope="module")
def resumed(rollout_fleet: RolloutFleet, second_batch_failed):
    """(a): fixed; the same command again, then once more with all three as canaries."""
    setup = rollout_fleet
    setup.ssh("cdfleet2", f"rm {PROJECT}/chroma_db && mv /root/chroma_db.aside {PROJECT}/chroma_db")
    run = setup.rollout("--json")
    times = {name: setup.times(name) for name in NAMES}
    # One batch of three: the cheapest way to run every host's deploy and proof again.
    again = setup.rollout("--json", "--canary", *NAMES)
    return run, times, again


def test_a_resumed_rollout_upgrades_batch_by_batch_and_keeps_every_record(rollout_fleet, resumed):
    setup = rollout_fleet
    run, times, _ = resumed
    assert run.returncode == 0, run.stderr
    summary = run.summary
    assert summary["halted"] is None
    assert summary["summary"] == {
        "changed": ["cdfleet2", "cdfleet3"], "unchanged": ["cdfleet1"],
        "proven": list(NAMES), "failed": [], "untouched": [],
    }  # fmt: skip
    # Order, from the hosts: each host's proof (its container's last start) came
    # before the next batch's deploy took its backup and wrote its compose file.
    one, two, three = (times[name] for name in NAMES)
    assert one["backup"] < one["compose"] < two["backup"] < two["compose"] < three["backup"]
    assert one["started"] < two["backup"] < two["started"] < three["backup"] < three["started"]
    for name in NAMES:
        assert setup.running(name) == "chromadb/chroma:1.5.9 healthy"
    assert setup.read_records(*NAMES) == setup.records
    print({name: {key: f"{value:.3f}" for key, value in t.items()} for name, t in times.items()})


def test_a_second_run_changes_nothing_and_proves_every_host_again(rollout_fleet, resumed):
    setup = rollout_fleet
    _, times, again = resumed
    assert again.returncode == 0, again.stderr
    summary = again.summary
    assert [batch["hosts"] for batch in summary["batches"]] == [list(NAMES)]
    assert summary["summary"]["changed"] == []
    assert summary["summary"]["unchanged"] == summary["summary"]["proven"] == list(NAMES)
    for name in NAMES:
        assert setup.times(name)["compose"] == times[name]["compose"]
        assert setup.running(name) == "chromadb/chroma:1.5.9 healthy"
