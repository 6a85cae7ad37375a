"""files/chroma_offsite.py backup with real restic on a local repository and a stand-in docker.

The stand-in ``docker`` logs each call and answers as a host whose stack runs
chroma and an auth-proxy would; cp, restic and the lock are real. Each fault
of the upload side (issue #23, section 7) is made for real: a wrong password,
another restic's exclusive lock (a ``restic check`` held stopped), a
repository on a full tmpfs, a SIGKILL while restic uploads, a data dir's
filesystem without room for the staging copy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness.offsite_config import init_repository, restic_on, write_offsite
from prometheus_client.parser import text_string_to_metric_families
from test_chroma_safety import chroma_like_sqlite

FILES = Path(__file__).resolve().parent.parent.parent / "files"
PASSWORD = "correct horse battery staple"

# A shell script, not Python: a run calls docker about ten times, and Python's start-up
# on a busy machine would cost the suite half a minute. Logs each call's arguments on a
# line, tab-separated (no path here holds a tab).
# A backup's stop and start: docker's own of chroma's container (its id listed before), then
# compose's start of what ran, which waits for the services' health.
STOPPED_FOR_THE_COPY = ["stop chroma", "start chroma", "start chroma auth-proxy"]

FAKE_DOCKER = """#!/bin/sh
line=$(printf '%s\t' "$@"); printf '%s\n' "$line" >>"$DOCKER_LOG"
if [ "$1" = compose ]; then
    # As real compose: a COMPOSE_PROJECT_NAME in the project's .env wins over the file's
    # name, and that other project runs nothing.
    grep -qs '^COMPOSE_PROJECT_NAME=' "$3/.env" && exit 0
    while [ "$1" != -f ]; do shift; done
    shift 2
fi
case $1 in
    ps) case " $* " in *" --services "*) printf 'chroma\nauth-proxy\n' ;; *) echo c0ffee ;; esac ;;
    # No address the host reaches: the run waits for compose's own --wait.
    inspect) case $* in *NetworkSettings*) ;; *) echo chromadb/chroma:1.5.9 ;; esac ;;
    config) echo '{"services": {"chroma": {"image": "chromadb/chroma:1.5.9"}}}' ;;
    stop) sleep "${STOP_SLEEP:-0}" ;;
esac
"""


@pytest.fixture(scope="module")
def empty_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``restic init`` (its key's scrypt is calibrated: seconds here), copied per test."""
    repository = tmp_path_factory.mktemp("template") / "repo"
    init_repository(repository, PASSWORD)
    return repository


def repository_copy(template: Path, where: Path) -> Path:
    """A repository of its own (restic's files are content-addressed: the copies share its id,
    and so a cache dir, without ever naming one file with two contents)."""
    shutil.copytree(template, where)
    return where


@pytest.fixture
def host(tmp_path: Path, empty_repository: Path) -> dict:
    """A project dir (a hostile name), its data, a repository, a stand-in docker, a config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    project_dir = tmp_path / 'it\'s a "project" dir'
    data_dir = project_dir / "chroma_data"
    data_dir.mkdir(parents=True)
    chroma_like_sqlite(data_dir / "chroma.sqlite3").close()
    (data_dir / "segment.bin").write_bytes(os.urandom(256 * 1024))
    (project_dir / "docker-compose.yml").write_text("services: {}\n")
    repository = repository_copy(empty_repository, tmp_path / "repo")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "DOCKER_LOG": str(tmp_path / "docker.log")}  # fmt: skip
    config = configure(project_dir, "fx", "web-1", repository, tmp_path)
    return {"project_dir": project_dir, "data_dir": data_dir, "repository": repository,
            "env": env, "config": config, "tmp": tmp_path}  # fmt: skip


def configure(project_dir: Path, name: str, host_name: str, repository: Path, tmp: Path,
              **options) -> Path:  # fmt: skip
    options.setdefault("restic_lock_wait", 2)
    return write_offsite(project_dir, project_name=name, host=host_name,
                         repository=str(repository), password=options.pop("password", PASSWORD),
                         metrics_file=tmp / "metrics" / f"{name}-{host_name}.prom",
                         **options)  # fmt: skip


def offsite(host: dict, config: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(FILES / "chroma_offsite.py"), "backup",
         "--config", str(config or host["config"])],
        capture_output=True, text=True, timeout=120, env={**host["env"], **env},
    )  # fmt: skip


def docker_steps(host: dict) -> list[str]:
    """Each stop and start by its verb and services: ``stop chroma``, ``start chroma ...``.

    compose's by the services it names; docker's by the containers, c0ffee (chroma's,
    as the stand-in lists it) named ``chroma``.
    """
    log = Path(host["env"]["DOCKER_LOG"])
    steps = []
    # Whole lines only: a test polls this while the stand-in is still writing its line.
    for line in log.read_text().split("\n")[:-1] if log.exists() else []:
        args = line.split("\t")[:-1]
        if args and args[0] in ("stop", "start"):
            named = ["chroma" if word == "c0ffee" else word for word in args[1:]]
            steps.append(" ".join([args[0], *named]))
            continue
        verb = args.index("-f") + 2 if "-f" in args else len(args)
        if args and args[0] == "compose" and verb < len(args) and args[verb] in ("stop", "start"):
            words = args[args.index("-f") + 2 :]
            steps.append(" ".join(w for w in words if not w.startswith("--") and
                                  not w.isdigit()))  # fmt: skip
    return steps


def snapshots(config: Path, *filters: str) -> list[dict]:
    listed = restic_on(config, "snapshots", "--json", *filters)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout) or []


def latest_manifest(host: dict) -> dict:
    staging = json.loads(host["config"].read_text())["staging_dir"]
    return json.loads(
        restic_on(host["config"], "dump", "latest", f"{staging}/manifest.json").stdout
    )


def status_mode(host: dict) -> int:
    return (host["project_dir"] / ".chroma-deploy/offsite-status.json").stat().st_mode & 0o777


def metrics(config: Path) -> dict[str, float]:
    """The textfile, read by prometheus_client's own parser: one sample per metric."""
    path = json.loads(config.read_text())["metrics_file"]
    found = {}
    for family in text_string_to_metric_families(Path(path).read_text()):
        for sample in family.samples:
            assert set(sample.labels) == {"project", "host"}
            found[sample.name] = sample.value
    return found


def test_a_backup_stops_chroma_only_for_the_copy_and_uploads_a_tagged_snapshot_with_manifest(
    host: dict,
):
    done = offsite(host)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # Only the chroma service stops; what ran before is started again, waited for.
    assert docker_steps(host) == STOPPED_FOR_THE_COPY
    found = snapshots(host["config"])
    assert len(found) == 1
    snapshot = found[0]
    assert snapshot["hostname"] == "web-1"
    assert sorted(snapshot["tags"]) == ["chroma_version=1.5.9", "host=web-1", "project=fx",
                                       "records=2"]  # fmt: skip
    assert done.stdout.startswith(f"web-1: snapshot {snapshot['short_id']} of fx written: ")
    staging = json.loads(host["config"].read_text())["staging_dir"]
    assert snapshot["paths"] == [staging]
    assert not os.path.exists(staging)  # removed after the upload
    # The manifest in the snapshot is the data's, read from the copy.
    dumped = restic_on(host["config"], "dump", "latest", f"{staging}/manifest.json")
    manifest = json.loads(dumped.stdout)
    assert manifest["project"] == "fx" and manifest["version"] == "1.5.9"
    assert sorted(manifest["collections"]) == ["default_tenant/default_database/docs",
                                               "default_tenant/other/docs"]  # fmt: skip
    restored = host["tmp"] / "restored"
    back = restic_on(host["config"], "restore", "latest", "--target", str(restored))
    assert back.returncode == 0, back.stderr
    copy = restored / staging.lstrip("/") / "data"
    assert (copy / "segment.bin").read_bytes() == (host["data_dir"] / "segment.bin").read_bytes()
    status = json.loads((host["project_dir"] / ".chroma-deploy/offsite-status.json").read_text())
    assert status["last_snapshot"] == snapshot["short_id"] and status["last_exit_code"] == 0
    prom = Path(json.loads(host["config"].read_text())["metrics_file"])
    assert (prom.stat().st_mode & 0o777, prom.parent.stat().st_mode & 0o777) == (0o644, 0o755)
    assert status_mode(host) == 0o600
    first = metrics(host["config"])
    assert first["chroma_deploy_backup_last_exit_code"] == 0
    assert first["chroma_deploy_backup_snapshots"] == 1
    assert first["chroma_deploy_backup_last_check_success"] == 1  # the first run checks
    assert first["chroma_deploy_backup_last_size_bytes"] > 256 * 1024
    assert first["chroma_deploy_backup_last_downtime_seconds"] > 0
    assert first["chroma_deploy_backup_last_downtime_seconds"] <= (
        first["chroma_deploy_backup_last_duration_seconds"])  # fmt: skip
    assert abs(first["chroma_deploy_backup_last_success_timestamp_seconds"] - time.time()) < 60

    # Unchanged data: the copy's new inodes and ctimes are not read again.
    again = offsite(host)
    assert again.returncode == 0, again.stderr
    second = metrics(host["config"])
    assert second["chroma_deploy_backup_snapshots"] == 2
    assert second["chroma_deploy_backup_last_added_bytes"] < 64 * 1024
    # Checked 7 days ago at most: not again.
    assert (second["chroma_deploy_backup_last_check_timestamp_seconds"]
            == first["chroma_deploy_backup_last_check_timestamp_seconds"])  # fmt: skip
    # The database's bytes are the same: its collections are the last run's, not read again.
    status_file = host["project_dir"] / ".chroma-deploy/offsite-status.json"
    assert json.loads(status_file.read_text())["last_manifest"] == "reused"
    assert latest_manifest(host)["collections"] == manifest["collections"]

    # A document rewritten in place, the file's size and mtime kept: read again, and uploaded.
    database = host["data_dir"] / "chroma.sqlite3"
    before = database.stat()
    with sqlite3.connect(database) as db:
        db.execute("UPDATE embedding_metadata SET string_value = 'HELLO' WHERE "
                   "string_value = 'hello'")  # fmt: skip
    db.close()
    os.utime(database, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert database.stat().st_size == before.st_size
    third = offsite(host)
    assert third.returncode == 0, third.stderr
    assert json.loads(status_file.read_text())["last_manifest"] == "read"
    changed = latest_manifest(host)["collections"]["default_tenant/default_database/docs"]
    assert (
        changed["content_sha256"]
        != (manifest["collections"]["default_tenant/default_database/docs"]["content_sha256"])
    )
    sys.path.insert(0, str(FILES))
    from chroma_restic import Offsite, restic_args

    uploaded = subprocess.run(
        restic_args(Offsite.load(str(host["config"])), "dump", "latest",
                    f"{staging}/data/chroma.sqlite3"), capture_output=True, check=True,
    )  # fmt: skip
    assert uploaded.stdout == database.read_bytes()  # the new bytes, not the last snapshot's


def test_retention_forgets_only_this_projects_snapshots_of_this_host_in_a_shared_repository(
    host: dict,
):
    """Two projects and two hosts in one repository: fx on web-1 keeps 1, nobody else loses any."""
    tmp, repository = host["tmp"], host["repository"]
    others = {}
    for name, host_name in (("fx", "web-2"), ("other", "web-1")):
        project_dir = tmp / f"{name} on {host_name}"
        (project_dir / "chroma_data").mkdir(parents=True)
        chroma_like_sqlite(project_dir / "chroma_data" / "chroma.sqlite3").close()
        (project_dir / "docker-compose.yml").write_text("services: {}\n")
        others[(name, host_name)] = configure(project_dir, name, host_name, repository, tmp)
    pruning = configure(host["project_dir"], "fx", "web-1", repository, tmp, keep={"daily": 1})
    for config in (*others.values(), *others.values(), pruning):
        done = offsite(host, config)
        assert done.returncode == 0, done.stderr
    before = {(s["tags"][0], s["hostname"]) for s in snapshots(pruning)}
    assert len(snapshots(pruning)) == 5
    (host["data_dir"] / "segment.bin").write_bytes(b"changed")
    done = offsite(host, pruning)
    assert done.returncode == 0, done.stderr
    found = snapshots(pruning)
    counts = {key: sum(1 for s in found if (f"project={key[0]}", key[1]) == (
        next(t for t in s["tags"] if t.startswith("project=")), s["hostname"]))
        for key in (("fx", "web-1"), ("fx", "web-2"), ("other", "web-1"))}  # fmt: skip
    assert counts == {("fx", "web-1"): 1, ("fx", "web-2"): 2, ("other", "web-1"): 2}
    assert before  # every group was there before the prune
    assert metrics(pruning)["chroma_deploy_backup_snapshots"] == 1
    checked = restic_on(pruning, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def assert_refused(host: dict, done: subprocess.CompletedProcess, key: str, words: str) -> str:
    """One line on stderr naming the host and the key; exit 1; the metrics say so."""
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"web-1: {key}: "), lines[0]
    assert words in lines[0], lines[0]
    assert PASSWORD not in done.stderr + done.stdout
    assert str(host["repository"]) not in done.stderr
    assert metrics(host["config"])["chroma_deploy_backup_last_exit_code"] == 1
    staging = json.loads(host["config"].read_text())["staging_dir"]
    assert not os.path.exists(staging)
    return lines[0]


def test_a_wrong_password_is_refused_before_chroma_is_stopped(host: dict):
    configure(host["project_dir"], "fx", "web-1", host["repository"], host["tmp"],
              password="not the password")  # fmt: skip
    done = offsite(host)
    line = assert_refused(host, done, "chroma_backup_password_file",
                          "the password does not open the repository")  # fmt: skip
    assert "put the repository's password in chroma_backup_password_file" in line
    assert docker_steps(host) == []


def hold_exclusive_lock(host: dict) -> subprocess.Popen:
    """A real ``restic check``, stopped (SIGSTOP) while its exclusive lock is in the repository."""
    locks = host["repository"] / "locks"

    def locked() -> bool:  # written whole (the local backend renames a -tmp- file into place)
        return any("-tmp-" not in lock.name for lock in locks.iterdir())

    for _ in range(50):
        holder = subprocess.Popen(
            ["restic", "-r", str(host["repository"]), "--password-file",
             str(host["project_dir"] / "secrets" / "restic-password"), "check", "--read-data"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        while holder.poll() is None and not locked():
            time.sleep(0.001)
        holder.send_signal(signal.SIGSTOP)
        while holder.poll() is None and "T" not in Path(f"/proc/{holder.pid}/stat").read_text(
        ).rsplit(")", 1)[1].split()[0]:  # fmt: skip
            time.sleep(0.001)
        if holder.poll() is None and locked():
            return holder
        holder.send_signal(signal.SIGCONT)
        holder.wait()
    raise AssertionError("restic check never held its lock long enough to be seen")


def test_another_restics_exclusive_lock_is_waited_for_then_named_with_chroma_serving(
    host: dict,
):
    """A real ``restic check`` holds the repository's exclusive lock (stopped while it does)."""
    first = offsite(host)
    assert first.returncode == 0, first.stderr
    Path(host["env"]["DOCKER_LOG"]).unlink()
    holder = hold_exclusive_lock(host)
    try:
        started = time.monotonic()
        done = offsite(host)
        waited = time.monotonic() - started
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.wait(timeout=60)
    line = assert_refused(host, done, "chroma_backup_repository",
                          "the repository is locked by another restic")  # fmt: skip
    assert f"locked exclusively by PID {holder.pid}" in line
    assert waited >= 2  # restic_lock_wait: tried again before giving up
    assert docker_steps(host) == STOPPED_FOR_THE_COPY  # serving again
    assert len(snapshots(host["config"])) == 1
    again = offsite(host)  # the lock is gone: the next run writes its snapshot
    assert again.returncode == 0, again.stderr
    assert len(snapshots(host["config"])) == 2


def tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def test_a_full_repository_disk_fails_the_upload_with_chroma_serving_and_nothing_lost(
    host: dict,
):
    disk = host["tmp"] / "small disk"
    tmpfs(disk, "6m")
    try:
        repository = disk / "repo"
        repository_copy(host["repository"], repository)  # still empty
        config = configure(host["project_dir"], "fx", "web-1", repository, host["tmp"])
        first = offsite(host, config)
        assert first.returncode == 0, first.stderr
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * (free - 64 * 1024))
        (host["data_dir"] / "segment.bin").write_bytes(os.urandom(1024 * 1024))
        Path(host["env"]["DOCKER_LOG"]).unlink()
        done = offsite(host, config)
        host["repository"] = repository
        line = assert_refused(host, done, "chroma_backup_repository",
                              "the repository's disk is full")  # fmt: skip
        assert "no snapshot was written, the earlier ones are intact" in line
        assert docker_steps(host) == STOPPED_FOR_THE_COPY  # serving again
        assert len(snapshots(config)) == 1
        filler.unlink()
        again = offsite(host, config)
        assert again.returncode == 0, again.stderr
        assert len(snapshots(config)) == 2
        checked = restic_on(config, "check", "--read-data")
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_no_room_for_the_staging_copy_is_refused_before_chroma_is_stopped(host: dict):
    small = host["tmp"] / "small"
    tmpfs(small, "16m")
    try:
        project_dir = small / "project"
        (project_dir / "chroma_data").mkdir(parents=True)
        chroma_like_sqlite(project_dir / "chroma_data" / "chroma.sqlite3").close()
        (project_dir / "chroma_data" / "segment.bin").write_bytes(os.urandom(1024 * 1024))
        (project_dir / "docker-compose.yml").write_text("services: {}\n")
        host["config"] = configure(project_dir, "fx", "web-1", host["repository"], host["tmp"])
        done = offsite(host)
        line = assert_refused(host, done, "chroma_data_dir", "no space for the staging copy")
        assert "Chroma was not stopped" in line
        assert docker_steps(host) == []
        assert (project_dir / "chroma_data" / "segment.bin").stat().st_size == 1024 * 1024
    finally:
        subprocess.run(["umount", str(small)], check=False)


def restic_children(pid: int) -> list[int]:
    """restic processes whose parent is ``pid`` (or were, until it died: then init's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if cmdline[0].endswith(b"restic") and b"backup" in cmdline and parent == pid:
            found.append(int(entry.name))
    return found


def test_a_run_killed_during_the_upload_leaves_no_upload_running_and_the_next_run_succeeds(
    host: dict,
):
    """SIGKILL of the program (not its group) once restic uploads: restic dies with it."""
    (host["data_dir"] / "segment.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    run = subprocess.Popen(
        [sys.executable, str(FILES / "chroma_offsite.py"), "backup", "--config",
         str(host["config"])], env=host["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    uploading: list[int] = []
    locks = host["repository"] / "locks"
    # The counted step: restic backup runs and holds its lock in the repository.
    while (
        time.monotonic() < deadline
        and run.poll() is None
        and not (uploading and any("-tmp-" not in lock.name for lock in locks.iterdir()))
    ):
        uploading = uploading or restic_children(run.pid)
        time.sleep(0.005)
    assert uploading, "restic backup never started"
    run.kill()
    run.wait()
    assert docker_steps(host) == STOPPED_FOR_THE_COPY  # Chroma serves
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in uploading) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in uploading), "restic outlived the run"
    staging = Path(json.loads(host["config"].read_text())["staging_dir"])
    assert staging.exists()  # what a killed run leaves: the copy, never data
    assert [lock.name for lock in locks.iterdir()]  # and restic's lock, stale now
    assert snapshots(host["config"]) == []
    done = offsite(host)
    assert done.returncode == 0, done.stderr
    assert len(snapshots(host["config"])) == 1
    assert not staging.exists()
    checked = restic_on(host["config"], "check", "--read-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_run_killed_while_chroma_is_stopped_is_undone_by_the_next_run_first(host: dict):
    run = subprocess.Popen(
        [sys.executable, str(FILES / "chroma_offsite.py"), "backup", "--config",
         str(host["config"])], env={**host["env"], "STOP_SLEEP": "30"},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while docker_steps(host) != ["stop chroma"] and time.monotonic() < deadline:
        time.sleep(0.01)
    run.kill()
    run.wait()
    done = offsite(host)
    assert done.returncode == 0, done.stderr
    # The next run starts Chroma first (compose), then stops it for its own copy.
    assert docker_steps(host) == ["stop chroma", "start chroma auth-proxy", *STOPPED_FOR_THE_COPY]


def test_the_project_lock_held_by_another_run_is_waited_for_then_named(host: dict):
    configure(host["project_dir"], "fx", "web-1", host["repository"], host["tmp"],
              lock_timeout=1)  # fmt: skip
    lock_dir = Path(json.loads(host["config"].read_text())["lock_dir"])
    lock_dir.mkdir(parents=True, exist_ok=True)
    holder = "deploy.py run from control (pid 1), pid 1 on this host, since 2026-12-07T00:00:00Z"
    (lock_dir / "holder").write_text(holder + "\n")
    held = subprocess.Popen(["flock", str(lock_dir / "lock"), "sleep", "30"])
    try:
        time.sleep(0.2)
        done = offsite(host)
    finally:
        held.kill()
        held.wait()
    line = assert_refused(host, done, "chroma_lock_timeout",
                          "the project is locked by another run for more than 1 s")  # fmt: skip
    assert holder in line
    assert docker_steps(host) == []


def test_a_week_after_the_last_check_the_repository_is_read_and_a_damaged_pack_is_reported(
    host: dict,
):
    config = configure(host["project_dir"], "fx", "web-1", host["repository"], host["tmp"],
                       check_subset="100%")  # fmt: skip
    first = offsite(host, config)
    assert first.returncode == 0, first.stderr
    checked = metrics(config)["chroma_deploy_backup_last_check_timestamp_seconds"]
    # A pack of the repository damaged on its disk, and the last check 8 days ago.
    pack = max((host["repository"] / "data").rglob("*"), key=lambda p: p.stat().st_size)
    pack.write_bytes(b"\0" * pack.stat().st_size)
    status_file = host["project_dir"] / ".chroma-deploy" / "offsite-status.json"
    status = json.loads(status_file.read_text())
    status["last_check"] = time.time() - 8 * 24 * 3600
    status_file.write_text(json.dumps(status))
    (host["data_dir"] / "segment.bin").write_bytes(b"changed")
    done = offsite(host, config)
    line = assert_refused(host, done, "chroma_backup_repository",
                          "restic check --read-data-subset 100% did not pass")  # fmt: skip
    assert "was written and nothing was deleted" in line
    found = metrics(config)
    assert found["chroma_deploy_backup_last_check_success"] == 0
    assert found["chroma_deploy_backup_last_check_timestamp_seconds"] > checked
    assert found["chroma_deploy_backup_snapshots"] == 2  # the backup itself was written


def test_without_the_compose_file_nothing_is_copied_from_a_live_chroma(host: dict):
    (host["project_dir"] / "docker-compose.yml").unlink()
    done = offsite(host)
    line = assert_refused(host, done, "chroma_project_dir", "docker-compose.yml is not there")
    assert "Chroma cannot be stopped for a consistent copy" in line
    assert docker_steps(host) == [] and snapshots(host["config"]) == []


# --- attacks (h3): a copy of a live database, an interrupted copy, an empty data dir ------


def test_a_compose_project_name_in_the_env_is_refused_not_copied_live(host: dict):
    """Cron's run as backup.py's: compose would list another project and stop nothing."""
    (host["project_dir"] / ".env").write_text("COMPOSE_PROJECT_NAME=elsewhere\n")
    done = offsite(host)
    line = assert_refused(host, done, "chroma_project_dir", ".env sets COMPOSE_PROJECT_NAME")
    assert "nothing was stopped or uploaded" in line
    assert snapshots(host["config"]) == []


def test_a_run_terminated_while_chroma_is_stopped_starts_it_again_and_says_so(host: dict):
    """SIGTERM (a timeout, a shutdown), SIGINT (Ctrl-C) or SIGHUP during the copy."""
    for number, sent in enumerate((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), 1):
        run = subprocess.Popen(
            [sys.executable, str(FILES / "chroma_offsite.py"), "backup", "--config",
             str(host["config"])], env={**host["env"], "STOP_SLEEP": "30"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while len(docker_steps(host)) < 2 * number - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        run.send_signal(sent)
        _, stderr = run.communicate(timeout=60)
        # Chroma is started at once, not at the next scheduled run (a day later).
        assert docker_steps(host)[-2:] == ["stop chroma", "start chroma auth-proxy"], sent
        done = subprocess.CompletedProcess(run.args, run.returncode, "", stderr)
        line = assert_refused(host, done, "chroma_backup_repository",
                              f"the backup was stopped by {sent.name}")  # fmt: skip
        assert "Chroma was started again" in line
    assert snapshots(host["config"]) == []


def test_a_data_dir_chroma_never_opened_is_no_backup_and_forgets_no_good_one(host: dict):
    """Wiped (or never opened): an empty snapshot would be `latest`, and prune the real ones."""
    config = configure(host["project_dir"], "fx", "web-1", host["repository"], host["tmp"],
                       keep={"daily": 1})  # fmt: skip
    first = offsite(host, config)
    assert first.returncode == 0, first.stderr
    assert "2 records" in first.stdout
    good = snapshots(config)
    for item in host["data_dir"].iterdir():
        item.unlink()
    done = offsite(host, config)
    line = assert_refused(host, done, "chroma_data_dir", "has no chroma.sqlite3")
    assert "nothing was uploaded or forgotten" in line
    assert snapshots(config) == good  # the one good snapshot is still there
    assert docker_steps(host) == STOPPED_FOR_THE_COPY


def test_a_data_dir_emptied_and_opened_again_is_no_backup_and_forgets_no_good_one(host: dict):
    """Emptied, then Chroma made a new database: no records after a snapshot that had some.

    Each night's empty snapshot would be `latest`, and with a keep each one pushes a good
    one out. Refused (after the copy, before the upload) unless chroma_allow_empty_data_dir.
    """
    config = configure(host["project_dir"], "fx", "web-1", host["repository"], host["tmp"],
                       keep={"daily": 1})  # fmt: skip
    first = offsite(host, config)
    assert first.returncode == 0, first.stderr
    assert "2 records" in first.stdout
    good = snapshots(config)
    db = sqlite3.connect(host["data_dir"] / "chroma.sqlite3")
    with db:
        db.execute("DELETE FROM embedding_metadata")
        db.execute("DELETE FROM embeddings")
    db.close()  # the backup refuses a database another process holds open
    done = offsite(host, config)
    line = assert_refused(host, done, "chroma_data_dir", "holds no records, and the last snapshot")
    assert "held 2" in line and "nothing was uploaded or forgotten" in line
    assert snapshots(config) == good
    allowed = configure(host["project_dir"], "fx", "web-1", host["repository"], host["tmp"],
                        keep={"daily": 1}, allow_empty_data_dir=True)  # fmt: skip
    meant = offsite(host, allowed)
    assert meant.returncode == 0, meant.stderr
    assert "0 records" in meant.stdout


def test_a_failed_verification_blocks_the_scheduled_backup_as_it_blocks_backup_py(host: dict):
    """Unverified data as the newest snapshot would be `latest`, and a keep forgets good ones."""
    state = host["project_dir"] / ".chroma-deploy"
    state.mkdir(exist_ok=True)
    (state / "failed-upgrade-20261207T000000Z.json").write_text("{}\n")
    done = offsite(host)
    line = assert_refused(host, done, "chroma_accept_failed_verification",
                          "1 verification(s) failed on this host (failed-upgrade-")  # fmt: skip
    assert "nothing was stopped or uploaded" in line
    assert docker_steps(host) == [] and snapshots(host["config"]) == []


def test_another_database_beside_the_segment_dirs_blocks_the_scheduled_backup(host: dict):
    """The second attack: a database that names none of the segment dirs beside it (another
    stack's put back), or one SQLite cannot read, was uploaded by the schedule (exit 0),
    and with a keep set forgot the only good snapshot. Refused before Chroma stops, as
    backup.py and the deploy refuse it (checks/empty_data.py); a dir the database names
    passes."""
    segment = host["data_dir"] / "5d0c8b2e-6f1a-4f0e-9a51-2b7c5e1d9f20"
    segment.mkdir()
    done = offsite(host)
    words = "1 segment dir(s) beside a chroma.sqlite3 that names none of them"
    line = assert_refused(host, done, "chroma_allow_empty_data_dir", words)
    assert "Chroma was not stopped and nothing was uploaded or forgotten" in line
    assert docker_steps(host) == [] and snapshots(host["config"]) == []
    db = sqlite3.connect(host["data_dir"] / "chroma.sqlite3")
    with db:
        db.execute("INSERT INTO segments VALUES (?, 'VECTOR', 'c1')", (segment.name,))
    db.close()
    assert offsite(host).returncode == 0  # named: its own database
    database = host["data_dir"] / "chroma.sqlite3"
    database.write_bytes(database.read_bytes()[:4096])  # cut short
    cut = offsite(host)
    line = assert_refused(host, cut, "chroma_allow_empty_data_dir", "cannot be read as a database")
    assert len(snapshots(host["config"])) == 1


def declared_host(machine: str) -> str:
    """offsite.json's host as `pyinfra @local deploy.py` declares it on ``machine``.

    Run in a UTS namespace of its own, whose host name is ``machine``: another machine,
    as far as the declaration can tell.
    """
    code = (
        "import json; from declaration.offsite import OffsiteSecrets, offsite_target; "
        "from declaration.settings import load_settings; "
        "s = load_settings({'chroma_backup_repository': '/mnt/backup', "
        "'chroma_backup_password_file': '/etc/pw'}); "
        "t = offsite_target(s, 0, 0, '@local', '/run/lock/x', "
        "OffsiteSecrets(repository='/mnt/backup', password='pw\\n')); "
        "print(json.loads(t.config.content)['host'])"
    )
    done = subprocess.run(
        ["unshare", "--uts", "sh", "-c", 'hostname "$1" && exec "$2" -c "$3"', "sh", machine,
         sys.executable, code], cwd=FILES.parent, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_two_machines_deployed_as_at_local_never_forget_each_others_snapshots(host: dict):
    """Defaults (project chroma in /srv/chroma) and pyinfra @local on two machines, one
    repository: each machine's retention must keep the other's snapshots."""
    first, second = declared_host("vm-a"), declared_host("vm-b")
    for machine in (first, second):
        config = configure(host["project_dir"], "fx", machine, host["repository"], host["tmp"],
                           keep={"daily": 1})  # fmt: skip
        done = offsite(host, config)
        assert done.returncode == 0, done.stderr
    assert sorted(s["hostname"] for s in snapshots(config)) == ["vm-a", "vm-b"]


def test_a_chroma_that_still_holds_the_database_after_the_stop_is_never_copied(host: dict):
    """Chroma not really stopped (its service renamed in an edited compose file, a second
    stack on the data dir): the copy of a live database would be a snapshot that lies."""
    live = sqlite3.connect(host["data_dir"] / "chroma.sqlite3")  # as a serving Chroma holds it
    try:
        live.execute("SELECT count(*) FROM embeddings").fetchone()
        done = offsite(host)
    finally:
        live.close()
    line = assert_refused(host, done, "chroma_project_dir", "chroma.sqlite3 is still open")
    assert f"pid {os.getpid()}" in line and "nothing was copied or uploaded" in line
    assert docker_steps(host) == ["stop chroma", "start chroma auth-proxy"]  # serving again
    assert snapshots(host["config"]) == []
