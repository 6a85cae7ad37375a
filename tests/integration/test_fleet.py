"""A fleet over SSH: four real hosts (own sshd, own Docker engine) converged in one run.

The hosts come from tests/harness/ssh_hosts.py, recreated once per session so the
first converge starts from nothing: no project dir, no Chroma image anywhere (no
registry answers: the image is shipped from this machine), and each host's engine
in one of the states the deploy must converge: installed but stopped with a stale
pid file (cdfleet1), running with only Compose v1 (cdfleet2), no Docker at all
(cdfleet3), only a docker CLI (cdfleet4). cdfleet2 is reached as a non-root user
with sudo. Every check of the result goes over ssh with OpenSSH, independently of
pyinfra and of our facts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    RECORDS,
    DeployRun,
    chroma_client,
    free_port,
    read_records,
    run_deploy,
    run_drift,
    wait_for_heartbeat,
    write_records,
)
from harness.ssh_hosts import BY_NAME, HOSTS, Fleet, SshHost, ensure_fleet

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "/srv/chroma"
CONTAINER = "chroma-chroma-1"
IMAGE = "chromadb/chroma:1.5.9"
ENGINE_OP = "Docker Engine and Compose v2"
IMAGE_OP = f"Image {IMAGE} (source: ship)"
DIRS_OP = f"Project dir {PROJECT}, data dirs and files"
STACK_OP = "Stack chroma up and healthy"
# The docker CLI of this machine, which the cli_only host got (28.x, newer than its engine).
CONTROL_CLI_VERSION = subprocess.run(
    ["docker", "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
).stdout.strip()


@dataclass(frozen=True)
class ControlMachine:
    """This machine as pyinfra's control machine: a private image cache, docker save counted."""

    env: dict[str, str]
    cache: Path
    saves: Path

    def save_count(self) -> int:
        return len(self.saves.read_text().splitlines()) if self.saves.exists() else 0


def run_fleet(
    inventory: Path, *extra: str, env: dict[str, str] | None = None, deploy_file: str = "deploy.py"
) -> DeployRun:
    """One `pyinfra -y --json INVENTORY deploy.py` run, as a user runs it on a fleet."""
    return run_deploy({}, *extra, env=env, inventory=str(inventory), deploy_file=deploy_file)


def changed_hosts(run: DeployRun) -> dict[str, list[str]]:
    """Operation name -> hosts pyinfra counts as changed, for operations that changed any."""
    return {op["name"]: op["success"] for op in run.result["operations"] if op["success"]}


def errors(run: DeployRun) -> dict[str, list[str]]:
    return {op["name"]: op["error"] for op in run.result["operations"] if op["error"]}


def health(fleet: Fleet, test_host: SshHost) -> str:
    command = f"docker inspect --format '{{{{.State.Health.Status}}}}' {CONTAINER}"
    return fleet.ssh(test_host, command, check=False).stdout.strip()


def wait_healthy(fleet: Fleet, test_host: SshHost) -> None:
    """Until the host's Chroma container is healthy again (after its engine restarted)."""
    for _ in range(120):
        if health(fleet, test_host) == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"{test_host.name}: {CONTAINER} did not become healthy")


def assert_healthy(fleet: Fleet, test_host: SshHost) -> None:
    assert health(fleet, test_host) == "healthy", test_host.name
    beat = fleet.ssh(test_host, "curl -fsS http://127.0.0.1:8000/api/v2/heartbeat").stdout
    assert "nanosecond heartbeat" in beat, (test_host.name, beat)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    fleet = ensure_fleet(fresh=True)
    yield fleet
    ensure_fleet()  # a test that stopped a host leaves it running again


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlMachine]:
    """An empty image cache (so the first run must export) and a docker that logs saves."""
    base = tmp_path_factory.mktemp("cdfleet-control")
    shim = base / "bin"
    shim.mkdir()
    saves = base / "saves.log"
    docker = shutil.which("docker")
    assert docker, "the control machine needs docker (scripts/test-env.sh)"
    (shim / "docker").write_text(
        f'#!/bin/sh\n[ "$1" = save ] && echo "$*" >>{saves}\nexec {docker} "$@"\n'
    )
    (shim / "docker").chmod(0o755)
    env = os.environ.copy()
    env["PATH"] = f"{shim}:{env['PATH']}"
    env["XDG_CACHE_HOME"] = str(base / "cache")
    yield ControlMachine(env, base / "cache" / "chroma-deploy" / "images", saves)
    shutil.rmtree(base / "cache", ignore_errors=True)  # 300 MB of our own export


# Read on each host with plain commands, not with the DockerEngine fact.
ENGINE_PROBE = (
    "echo cli=$(docker version --format '{{.Client.Version}}' 2>/dev/null); "
    "echo dockerd=$(command -v dockerd >/dev/null && echo yes); "
    "echo answers=$(docker info >/dev/null 2>&1 && echo yes); "
    "echo compose_v2=$(docker compose version --short 2>/dev/null); "
    "echo compose_v1=$(docker-compose version --short 2>/dev/null); "
    "echo pid_file=$(cat /var/run/docker.pid 2>/dev/null)"
)


def engine_probe(fleet: Fleet, test_host: SshHost) -> dict[str, str]:
    lines = fleet.ssh(test_host, ENGINE_PROBE).stdout.splitlines()
    return dict(line.split("=", 1) for line in lines)


@dataclass(frozen=True)
class FirstConverge:
    engine_before: dict[str, dict[str, str]]
    image_before: dict[str, bool]
    first: DeployRun
    second: DeployRun
    seconds: tuple[float, float]


@pytest.fixture(scope="module")
def converged(fleet: Fleet, control: ControlMachine) -> FirstConverge:
    """The fleet's first converge in one run, then a second run."""
    engine_before = {h.name: engine_probe(fleet, h) for h in HOSTS}
    image_before = {
        h.name: fleet.ssh(h, f"docker image inspect {IMAGE}", check=False).returncode == 0
        for h in HOSTS
    }
    started = time.perf_counter()
    first = run_fleet(fleet.inventory, env=control.env)
    middle = time.perf_counter()
    second = run_fleet(fleet.inventory, env=control.env)
    seconds = (middle - started, time.perf_counter() - middle)
    print(f"fleet of {len(HOSTS)}: first run {seconds[0]:.1f} s, second run {seconds[1]:.1f} s")
    return FirstConverge(engine_before, image_before, first, second, seconds)


def test_first_converge_of_the_fleet_in_one_run_and_second_run_changes_nothing(converged):
    assert converged.image_before == {h.name: False for h in HOSTS}
    first = converged.first
    assert first.returncode == 0, first.output
    assert first.result["failed_hosts"] == []
    changed = changed_hosts(first)
    everyone = sorted(h.name for h in HOSTS)
    for name in (IMAGE_OP, DIRS_OP, STACK_OP):
        assert changed[name] == everyone, name

    second = converged.second
    assert second.returncode == 0, second.output
    assert second.result["failed_hosts"] == []
    assert second.result["totals"]["success"] == 0, changed_hosts(second)
    assert second.result["totals"]["no_change"] == first.result["totals"]["hosts"]


def test_every_host_is_healthy_and_keeps_its_data_on_its_own_disk(fleet, converged):
    for test_host in HOSTS:
        assert_healthy(fleet, test_host)
        # The data is in the host's own project dir, owned as declared (root, also
        # where the SSH user is "deploy" and sudo did the work).
        listing = fleet.ssh(test_host, f"stat -c '%u %g %a %n' {PROJECT}/chroma_data").stdout
        assert listing.split()[:3] == ["0", "0", "750"], (test_host.name, listing)
        fleet.ssh(test_host, f"test -s {PROJECT}/chroma_data/chroma.sqlite3")
        mounts = fleet.ssh(
            test_host, f"docker inspect --format '{{{{json .Mounts}}}}' {CONTAINER}"
        ).stdout
        assert f'"Source":"{PROJECT}/chroma_data","Destination":"/data"' in mounts
    assert BY_NAME["cdfleet2"].user == "deploy"

    # The persistence proof on every host at once: canary, down, up, read back.
    proof = run_deploy({}, inventory=str(fleet.inventory), deploy_file="prove.py", timeout=600)
    assert proof.returncode == 0, proof.output


def test_image_is_exported_once_and_a_second_run_ships_nothing(fleet, control, converged):
    assert control.save_count() == 1  # three hosts, one docker save
    control_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    archives = sorted(path.name for path in control.cache.iterdir())
    assert archives == [f"{control_id.removeprefix('sha256:')}.tar.gz"]
    for test_host in HOSTS:
        host_id = fleet.ssh(test_host, f"docker image inspect --format '{{{{.Id}}}}' {IMAGE}")
        assert host_id.stdout.strip() == control_id
        leftovers = fleet.ssh(test_host, "ls /var/tmp | grep chroma-deploy || true").stdout
        assert leftovers.strip() == "", (test_host.name, leftovers)

    image_op = next(op for op in converged.second.result["operations"] if op["name"] == IMAGE_OP)
    assert image_op["no_change"] == sorted(h.name for h in HOSTS)
    assert control.save_count() == 1  # the second run exported nothing either


def test_every_engine_state_converges_in_the_same_run(fleet, converged):
    """Stopped with a stale pid file, Compose v1 only, no Docker, a CLI only: one run each."""
    before = converged.engine_before
    # What each host was, read with plain commands before the run.
    stale_pid = before["cdfleet1"]["pid_file"]
    assert (before["cdfleet1"]["dockerd"], before["cdfleet1"]["answers"]) == ("yes", "")
    assert stale_pid and fleet.ssh(BY_NAME["cdfleet1"], f"cat /proc/{stale_pid}/comm").stdout != (
        "dockerd\n"
    )
    assert before["cdfleet2"]["answers"] == "yes"
    assert (before["cdfleet2"]["compose_v1"], before["cdfleet2"]["compose_v2"]) == ("1.29.2", "")
    assert all(before["cdfleet3"][key] == "" for key in ("cli", "dockerd", "answers")), before
    assert before["cdfleet4"]["cli"] == CONTROL_CLI_VERSION
    assert (before["cdfleet4"]["dockerd"], before["cdfleet4"]["answers"]) == ("", "")

    assert changed_hosts(converged.first)[ENGINE_OP] == sorted(h.name for h in HOSTS)
    after = {h.name: engine_probe(fleet, h) for h in HOSTS}
    for name, engine in after.items():
        assert (engine["dockerd"], engine["answers"]) == ("yes", "yes"), (name, engine)
        assert engine["compose_v2"], (name, engine)
        server = fleet.ssh(BY_NAME[name], "docker version --format '{{.Server.Version}}'")
        assert server.stdout.startswith("20.10"), (name, server.stdout)
    assert after["cdfleet2"]["compose_v1"] == "1.29.2"  # left as it was, v2 beside it
    # The newer CLI first on PATH still works against the 20.10 engine it now has.
    assert after["cdfleet4"]["cli"] == CONTROL_CLI_VERSION
    for name in ("cdfleet3", "cdfleet4"):
        status = fleet.ssh(BY_NAME[name], "dpkg-query -W -f '${Status}' docker.io").stdout
        assert status.endswith("installed"), (name, status)
    print(f"fleet of {len(HOSTS)}: first run {converged.seconds[0]:.1f} s, "
          f"second run {converged.seconds[1]:.1f} s")  # fmt: skip


def test_drift_check_over_ssh_finds_every_host_clean(fleet, converged):
    drift = run_drift({}, "--json", inventory=str(fleet.inventory), timeout=300)
    assert drift.returncode == 0, drift.output
    report = json.loads(drift.stdout)
    assert {name: host["status"] for name, host in report["hosts"].items()} == {
        h.name: "ok" for h in HOSTS
    }


def test_ship_of_an_image_the_control_machine_lacks_stops_before_any_host_changes(
    fleet, converged, control
):
    run = run_fleet(fleet.inventory, "--data", "chroma_image=cdfleet/nosuch", env=control.env)
    assert run.returncode == 1
    assert (
        "chroma_image_source: ship, but the control machine has no image cdfleet/nosuch:1.5.9; "
        "build or pull it there first" in run.output
    )
    assert "Traceback" not in run.output
    for test_host in HOSTS:
        compose = fleet.ssh(test_host, f"cat {PROJECT}/docker-compose.yml").stdout
        assert f'image: "{IMAGE}"' in compose, test_host.name
        assert_healthy(fleet, test_host)


FAULTS = {
    # fault: (host, what the user must read next to the host's name)
    "host down": ("cdfleet1", "Could not connect"),
    "key refused": ("cdfleet2", "Authentication error"),
    "host key changed": ("cdfleet3", "SSH host key error (Host key for 127.0.0.1 does not match"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_unreachable_host_is_named_with_its_reason_and_the_others_still_converge(
    fleet, converged, control, tmp_path, fault
):
    broken, reason = FAULTS[fault]
    others = [h for h in HOSTS if h.name != broken]
    overrides: dict[str, dict[str, str]] = {}
    if fault == "host down":
        subprocess.run(["docker", "stop", "--time", "20", broken], check=True, capture_output=True)
    elif fault == "key refused":
        overrides[broken] = {"ssh_key": str(fleet.wrong_key)}
    else:
        # The host's line in known_hosts now holds another key, as after a reinstall
        # or a man in the middle; the other lines stay right.
        port = f"[127.0.0.1]:{BY_NAME[broken].port} "
        other_key = " ".join(fleet.wrong_key.with_suffix(".pub").read_text().split()[:2])
        lines = [
            port + other_key if line.startswith(port) else line
            for line in fleet.known_hosts.read_text().splitlines()
        ]
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("\n".join(lines) + "\n")
        overrides[broken] = {"ssh_known_hosts_file": str(known_hosts)}
    inventory = fleet.write_inventory(
        tmp_path / "inventory.py", overrides=overrides, shared={"chroma_image_source": "ship"}
    )
    # Something for a good host to repair, so "still converge" means real work.
    fleet.ssh(others[0], f"docker stop {CONTAINER}")
    try:
        run = run_fleet(inventory, env=control.env)
        # The second run, with the host still unreachable: nothing left to change elsewhere.
        again = run_fleet(inventory, env=control.env)
    finally:
        if fault == "host down":
            ensure_fleet()
            wait_healthy(fleet, BY_NAME[broken])

    assert run.returncode != 0, run.output
    assert run.result["failed_hosts"] == [broken]
    named = [line for line in run.stderr.splitlines() if f"[{broken}]" in line]
    assert any(reason in line for line in named), named
    assert "Traceback" not in run.output
    assert errors(run) == {}
    assert changed_hosts(run) == {STACK_OP: [others[0].name]}
    for test_host in others:
        assert_healthy(fleet, test_host)
    assert again.result["failed_hosts"] == [broken]
    assert again.result["totals"]["success"] == 0, changed_hosts(again)


def test_drifted_host_is_repaired_and_the_others_are_left_alone(fleet, converged, control):
    cdfleet2 = BY_NAME["cdfleet2"]  # the sudo host: repairs go through sudo too
    fleet.ssh(
        cdfleet2,
        f"chmod 0777 {PROJECT}/chroma_data && rm {PROJECT}/chroma_db/.gitkeep "
        f"&& docker stop {CONTAINER}",
    )
    drift = run_drift({}, "--json", inventory=str(fleet.inventory), timeout=300)
    assert drift.returncode == 2, drift.output
    hosts = json.loads(drift.stdout)["hosts"]
    assert {name: host["status"] for name, host in hosts.items()} == {
        "cdfleet1": "ok", "cdfleet2": "drift", "cdfleet3": "ok", "cdfleet4": "ok",
    }  # fmt: skip
    found = {(item["kind"], item["resource"]) for item in hosts["cdfleet2"]["items"]}
    assert {
        ("mode", f"{PROJECT}/chroma_data"),
        ("missing", f"{PROJECT}/chroma_db/.gitkeep"),
        ("container_state", CONTAINER),
    } <= found, found

    repaired = run_fleet(fleet.inventory, env=control.env)
    assert repaired.returncode == 0, repaired.output
    assert changed_hosts(repaired) == {DIRS_OP: ["cdfleet2"], STACK_OP: ["cdfleet2"]}

    state = fleet.ssh(
        cdfleet2,
        f"stat -c '%a' {PROJECT}/chroma_data && stat -c '%s' {PROJECT}/chroma_db/.gitkeep "
        f"&& test -s {PROJECT}/chroma_data/chroma.sqlite3 && echo data",
    ).stdout.split()
    assert state == ["750", "0", "data"]
    assert_healthy(fleet, cdfleet2)

    again = run_fleet(fleet.inventory, env=control.env)
    assert again.returncode == 0, again.output
    assert again.result["totals"]["success"] == 0, changed_hosts(again)
    clean = run_drift({}, inventory=str(fleet.inventory), timeout=300)
    assert clean.returncode == 0, clean.output


def test_backup_and_restore_over_ssh_give_back_exactly_the_backup(fleet, converged, control):
    """On the sudo host: back up, change records, restore; the ids are the backup's again."""
    cdfleet2 = BY_NAME["cdfleet2"]
    only = ("--limit", cdfleet2.name)
    with fleet.forward(cdfleet2, free_port(), 8000) as port:
        written = {k: sorted(v) for k, v in write_records(port).items()}
        backup = run_fleet(fleet.inventory, *only, deploy_file="backup.py")
        assert backup.returncode == 0, backup.output
        archives = fleet.ssh(cdfleet2, "ls /var/backups/chroma-deploy").stdout.split()
        tarballs = [name for name in archives if name.endswith(".tar.gz")]
        assert len(tarballs) == 1 and tarballs[0].startswith("chroma-"), archives
        archive = f"/var/backups/chroma-deploy/{tarballs[0]}"
        manifest = json.loads(
            fleet.ssh(cdfleet2, f"cat {archive.removesuffix('.tar.gz')}.json").stdout
        )
        assert {k: v["count"] for k, v in manifest["collections"].items()} == {
            f"default_tenant/default_database/{name}": len(ids) for name, ids in written.items()
        }

        client = chroma_client(port)
        manuals = client.get_collection("manuals", embedding_function=None)
        manuals.delete(ids=written["manuals"][:10])
        manuals.add(ids=["late-arrival"], embeddings=[[1.0, 2.0, 3.0, 4.0]])
        client.delete_collection("tickets")
        assert read_records(port) != written

        restore_args = (*only, "--data", f"chroma_restore_archive={archive}")
        restored = run_fleet(fleet.inventory, *restore_args, deploy_file="restore.py")
        assert restored.returncode == 0, restored.output
        wait_for_heartbeat(port)
        assert read_records(port) == written
    aside = fleet.ssh(cdfleet2, f"ls -d {PROJECT}/chroma_data.before-restore-*").stdout.split()
    assert len(aside) == 1  # the data it replaced, moved aside, never deleted
    fleet.ssh(cdfleet2, f"test -s {aside[0]}/chroma.sqlite3")
    again = run_fleet(fleet.inventory, *restore_args, deploy_file="restore.py")
    assert again.returncode == 0, again.output
    assert again.result["totals"]["success"] == 0, changed_hosts(again)

    deploy = run_fleet(fleet.inventory, env=control.env)
    assert deploy.returncode == 0, deploy.output
    assert deploy.result["totals"]["success"] == 0, changed_hosts(deploy)


LEGACY_COMPOSE = """\
name: seedlegacy
services:
  chroma:
    image: chromadb/chroma:1.5.9
    ports: ['127.0.0.1:8002:8000']
    volumes: ['chroma_data:/data']
volumes:
  chroma_data: {}
"""


def test_named_volume_on_a_remote_host_is_migrated_verified_and_kept(fleet, converged, control):
    """The seed's BEFORE state on a server, moved to a second project's bind mount over SSH."""
    cdfleet1 = BY_NAME["cdfleet1"]
    try:
        fleet.ssh(
            cdfleet1,
            f"mkdir -p /srv/legacy && printf %s {shlex.quote(LEGACY_COMPOSE)} "
            ">/srv/legacy/docker-compose.yml && cd /srv/legacy && docker compose up --detach",
        )
        with fleet.forward(cdfleet1, free_port(), 8002) as port:
            wait_for_heartbeat(port)
            written = {k: sorted(v) for k, v in write_records(port).items()}
        assert sum(len(ids) for ids in written.values()) == 2 * RECORDS

        second_project = (
            "--limit", cdfleet1.name, "--data", "chroma_project_dir=/srv/chroma2",
            "--data", "chroma_compose_project=chroma2", "--data", "chroma_port=8001",
            "--data", "chroma_adopt_volume=seedlegacy_chroma_data",
        )  # fmt: skip
        # Another project's container still uses the volume: refused, and left running.
        refused = run_fleet(fleet.inventory, *second_project, env=control.env)
        assert refused.returncode == 1, refused.output
        assert "is used by containers of another project: seedlegacy-chroma-1" in refused.stderr
        running = fleet.ssh(cdfleet1, "docker inspect -f '{{.State.Status}}' seedlegacy-chroma-1")
        assert running.stdout.strip() == "running"
        # The user removes that stack's containers (the volume stays), then adopts it.
        fleet.ssh(cdfleet1, "cd /srv/legacy && docker compose down")
        started = time.perf_counter()
        first = run_fleet(fleet.inventory, *second_project, env=control.env)
        elapsed = time.perf_counter() - started
        assert first.returncode == 0, first.output
        changed = changed_hosts(first)
        assert changed["Data from a legacy named volume (copied, never deleted)"] == ["cdfleet1"]
        assert changed["Data taken over verified before the stack is published"] == ["cdfleet1"]
        second = run_fleet(fleet.inventory, *second_project, env=control.env)
        assert second.returncode == 0, second.output
        assert second.result["totals"]["success"] == 0, changed_hosts(second)

        with fleet.forward(cdfleet1, free_port(), 8001) as port:
            assert read_records(port) == written
        fleet.ssh(cdfleet1, "docker volume inspect seedlegacy_chroma_data")  # never deleted
        record = json.loads(
            fleet.ssh(
                cdfleet1, "cat /srv/chroma2/.chroma-deploy/migrated-seedlegacy_chroma_data.json"
            ).stdout
        )
        assert sum(v["count"] for v in record["before"]["collections"].values()) == 2 * RECORDS
        print(f"migrated {2 * RECORDS} records over SSH in {elapsed:.1f} s")

        # The volume stays (never deleted). It belongs to another compose project, so the
        # host's first project (whose data dir holds data) leaves it alone: no change.
        alone = run_fleet(fleet.inventory, env=control.env)
        assert alone.returncode == 0, alone.output
        assert alone.result["totals"]["success"] == 0, changed_hosts(alone)
        assert_healthy(fleet, cdfleet1)
    finally:
        # The test's own throwaway stacks and volume (the tool itself never removes one).
        fleet.ssh(
            cdfleet1,
            "cd /srv/chroma2 && docker compose down; cd /srv/legacy && docker compose down; "
            "docker volume rm seedlegacy_chroma_data",
            check=False,
        )
