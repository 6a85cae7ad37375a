"""maintain.py on the real images: the leak it finds, its two repairs, a kill, a full disk.

One Chroma 1.5.9 stack serves every test of the file, in order (each leaves it serving,
its records known): its project dir is a tmpfs of its own, so that a nearly full disk
is a file away. Records are written by the real client in one batch of 4-dimension
vectors: 2,000 per collection where the number matters (the leak the issue saw, the
vacuum's half, hnswlib's layout), 200 elsewhere. Every number is checked against the
data dir read another way (file sizes, SQLite, the client, Docker's events: each
--apply stops Chroma once). The schedule's cron line is run as cron runs it. 0.6.3's
path is the last test, on a stack of its own: what differs on 0.x (its vacuum command,
its leak), with a run killed after the vacuum.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, base_data, chroma_client, converge, run_drift, sh
from prometheus_client.parser import text_string_to_metric_families

from declaration.resources import Declared
from declaration.schedule import maintain_cron_name, maintain_textfile, marker
from declaration.settings import load_settings
from operations.maintenance import repair_command

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RECORDS = 2000  # the create-and-delete case and the memory estimate
FEW = 200  # where the number of records proves nothing more
TMPFS_MB = 160
CRON_ENV = ["env", "-i", "SHELL=/bin/sh", "PATH=/usr/bin:/bin", "HOME=/root", "LOGNAME=root"]


def add(port: int, name: str, records: int = RECORDS) -> list[str]:
    collection = chroma_client(port).create_collection(name, embedding_function=None)
    ids = [f"{name}-{i:05d}" for i in range(records)]
    collection.add(
        ids=ids,
        embeddings=[[float(i % 17), float(i % 19), float(i % 23), 1.0] for i in range(records)],
        metadatas=[{"n": i} for i in range(records)],
        documents=[f"{name} record {i} " + "x" * 400 for i in range(records)],
    )
    return ids


def everything(port: int) -> dict[str, Any]:
    """Every collection's records (ids, documents, metadata, vectors), by the client."""
    client = chroma_client(port)
    found = {}
    for listed in client.list_collections():
        got = client.get_collection(listed.name, embedding_function=None).get(
            include=["documents", "metadatas", "embeddings"]
        )
        found[listed.name] = sorted(
            zip(got["ids"], got["documents"], [json.dumps(m, sort_keys=True) for m in
                got["metadatas"]], [list(map(float, e)) for e in got["embeddings"]], strict=True)
        )  # fmt: skip
    return found


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def segment_dirs(data_dir: Path) -> set[str]:
    return {p.name for p in data_dir.iterdir() if p.is_dir() and len(p.name) == 36}


def named_segments(data_dir: Path) -> set[str]:
    db = sqlite3.connect(f"file:{data_dir / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT id FROM segments")}
    finally:
        db.close()


def maintain(data: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(ROOT / "maintain.py"), "@local"]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    return subprocess.run(
        [*args, *extra], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def report(data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    done = maintain(data, "--json")
    document = json.loads(done.stdout)
    assert document["hosts"]["@local"]["error"] is None, done.stdout + done.stderr
    return done.returncode, document["hosts"]["@local"]


def stops(name: str, since: float, until: float) -> int:
    """How many times the stack's chroma container stopped between two moments (Docker's log)."""
    said = sh(f"docker events --since {since:.3f} --until {until:.3f} --filter event=die "
              f"--filter container={name}-chroma-1 --format '{{{{.Action}}}}'")  # fmt: skip
    return len(said.stdout.split())


def backed_up_then_repaired(data: dict[str, Any], since: float) -> None:
    """The --apply's backup holds exactly the data its repair started from: one stop."""
    (manifest,) = [m for m in Path(data["chroma_backup_dir"]).glob("*.json")
                   if m.stat().st_mtime >= since]  # fmt: skip
    done = sorted(Path(data["chroma_project_dir"], ".chroma-deploy").glob("maintain-done-*.json"))
    record = json.loads(done[-1].read_text())
    assert done[-1].stat().st_mtime > manifest.stat().st_mtime
    assert json.loads(manifest.read_text())["collections"] == record["before"]["collections"]


def started_at(name: str) -> str:
    return sh(f"docker inspect -f '{{{{.State.StartedAt}}}}' {name}-chroma-1").stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A converged 1.5.9 stack on a tmpfs project dir, with the report scheduled."""
    name = f"cdtest{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp(name)
    project_dir = base / "stack"
    project_dir.mkdir()
    sh(f"mount -t tmpfs -o size={TMPFS_MB}m tmpfs '{project_dir}'")
    data = base_data(project_dir, name, chroma_backup_dir=str(base / "backups"),
                     chroma_maintain_schedule="auto")  # fmt: skip
    try:
        converge(data)
        yield data, project_dir / "chroma_data", name
    finally:
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)
        listed = sh("crontab -l -u root 2>/dev/null", check=False).stdout.splitlines()
        ours = marker(maintain_cron_name(str(project_dir)))
        keep = [line for i, line in enumerate(listed)
                if line != ours and not (i and listed[i - 1] == ours)]  # fmt: skip
        subprocess.run(["crontab", "-u", "root", "-"], input="".join(f"{x}\n" for x in keep),
                       text=True, check=True)  # fmt: skip
        sh(f"umount -l '{project_dir}'", check=False)
        Path(maintain_textfile(name)).unlink(missing_ok=True)


def test_a_deleted_collection_leaks_its_segment_dir_and_apply_moves_it_aside(stack):
    data, data_dir, name = stack
    port = data["chroma_port"]
    before_dirs = segment_dirs(data_dir)
    add(port, "keep")
    add(port, "gone")
    gone_dirs = segment_dirs(data_dir) - before_dirs - named_segments(data_dir)
    chroma_client(port).delete_collection("gone")
    leaked = segment_dirs(data_dir) - named_segments(data_dir)
    # Chroma 1.5.9 itself: the dir stays, the segments table no longer names it.
    assert leaked, f"1.5.9 left no segment dir behind: {segment_dirs(data_dir)}"
    assert not gone_dirs  # it was named while the collection lived
    leaked_bytes = {name: tree_bytes(data_dir / name) for name in leaked}
    kept = everything(port)

    code, found = report(data)
    assert code == 2
    assert found["report"]["orphans"] == [
        {"name": name, "bytes": size} for name, size in sorted(leaked_bytes.items())
    ]
    assert found["findings"][0]["kind"] == "orphaned_segments"

    since = time.time()
    done = maintain(data, "--apply", "orphans")
    assert done.returncode in (0, 2), done.stdout + done.stderr
    assert stops(name, since, time.time()) == 1  # the backup's stop is the repair's
    backed_up_then_repaired(data, since)
    moved = [x for x in (done.stdout + done.stderr).splitlines() if "orphans: moved" in x]
    assert moved, done.stdout + done.stderr
    assert f"{sum(leaked_bytes.values())} bytes" in moved[0]
    assert f"{RECORDS} records before and after" in moved[0]
    print(moved[0])
    assert not (segment_dirs(data_dir) - named_segments(data_dir))
    aside = [p for p in (data_dir.parent / ".chroma-deploy").glob("orphans-*/*")]
    assert {p.name for p in aside} == set(leaked)
    assert {p.name: tree_bytes(p) for p in aside} == leaked_bytes
    assert everything(port) == kept
    assert report(data)[1]["report"]["orphans"] == []


def test_a_run_killed_between_moves_is_finished_by_the_next(stack):
    data, data_dir, name = stack
    port = data["chroma_port"]
    add(port, "again", FEW)
    chroma_client(port).delete_collection("again")
    leaked = segment_dirs(data_dir) - named_segments(data_dir)
    assert leaked
    kept = everything(port)
    settings = load_settings(data)
    command = shlex.split(repair_command(Declared(settings, 0, 0), "orphans"))
    command[1] = str(ROOT / "files" / "chroma_maintain.py")  # this checkout's, as uploaded
    killed = subprocess.run(command, env={**os.environ, "CHROMA_DEPLOY_MAINTAIN_KILL_AT": "moved"},
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert "step: moved" in killed.stdout  # the counted step was reached
    pending = json.loads((data_dir.parent / ".chroma-deploy/maintain-pending.json").read_text())
    assert {Path(move[0]).name for move in pending["moves"]} == leaked
    assert sh(f"docker ps -q --filter name={name}-chroma-1").stdout.strip() == ""  # stopped
    _code, found = report(data)
    assert found["report"]["unfinished"] == "orphans"
    assert found["findings"][0]["kind"] == "unfinished_repair"

    done = maintain(data, "--apply", "orphans")
    assert done.returncode in (0, 2), done.stdout + done.stderr
    assert "resuming the orphans a killed run left" in done.stdout + done.stderr, done.stderr
    assert not (data_dir.parent / ".chroma-deploy/maintain-pending.json").exists()
    assert not (segment_dirs(data_dir) - named_segments(data_dir))
    assert everything(port) == kept


def test_a_vacuum_is_refused_on_a_full_disk_and_reclaims_on_a_free_one(stack):
    data, data_dir, name = stack
    port = data["chroma_port"]
    keep = chroma_client(port).get_collection("keep", embedding_function=None)
    keep.delete(ids=[f"keep-{i:05d}" for i in range(0, RECORDS, 2)])  # half of them
    kept = everything(port)
    _code, found = report(data)
    reclaimable = found["report"]["reclaimable_bytes"]
    assert reclaimable > 0
    filler = data_dir.parent / "filler"
    free = os.statvfs(data_dir).f_bavail * os.statvfs(data_dir).f_frsize
    need = found["report"]["vacuum_needs_bytes"]
    sh(f"fallocate -l {free - need + 1024 * 1024} '{filler}'")
    running_since = started_at(name)
    archives = sorted((Path(data["chroma_backup_dir"])).glob("*.tar.gz"))
    try:
        refused = maintain(data, "--apply", "vacuum")
    finally:
        filler.unlink()
    said = [
        line for line in (refused.stdout + refused.stderr).splitlines() if "vacuum needs" in line
    ]
    print(said)
    assert refused.returncode == 1
    refusals = [line.strip() for line in said if "nothing was stopped" in line]
    assert len(refusals) == 1
    assert refusals[0].startswith("@local: chroma_data_dir: a vacuum needs")
    assert started_at(name) == running_since  # never stopped
    assert sorted(Path(data["chroma_backup_dir"]).glob("*.tar.gz")) == archives

    size_before = found["report"]["sqlite_bytes"] + found["report"]["wal_bytes"]
    since = time.time()
    done = maintain(data, "--apply", "vacuum")
    assert done.returncode in (0, 2), done.stdout + done.stderr
    assert stops(name, since, time.time()) == 1
    backed_up_then_repaired(data, since)
    line = [x for x in (done.stdout + done.stderr).splitlines() if "vacuum: chroma.sqlite3" in x]
    assert line, done.stdout + done.stderr
    print(line[0])
    sqlite = data_dir / "chroma.sqlite3"
    size_after = sqlite.stat().st_size + (
        (data_dir / "chroma.sqlite3-wal").stat().st_size
        if (data_dir / "chroma.sqlite3-wal").exists()
        else 0
    )
    assert size_after < size_before
    assert f"{RECORDS // 2} records before and after" in line[0]
    assert everything(port) == kept
    assert len(kept["keep"]) == RECORDS // 2
    assert report(data)[1]["report"]["reclaimable_bytes"] < reclaimable


def test_the_memory_estimate_is_hnswlib_s_own_layout(stack):
    data, data_dir, _name = stack
    before = segment_dirs(data_dir)
    add(data["chroma_port"], "known")
    _code, found = report(data)
    (known,) = [c for c in found["report"]["collections"] if c["name"] == "known"]
    assert (known["records"], known["dimension"]) == (RECORDS, 4)
    # hnswlib keeps a record's vector, level-0 links and label in data_level0.bin.
    (level0,) = [data_dir / d / "data_level0.bin" for d in segment_dirs(data_dir) - before]
    per_record = 4 * 4 + (2 * 16 + 1) * 4 + 8
    print(f"data_level0.bin {level0.stat().st_size} bytes; estimate {known['index_bytes']}")
    assert level0.stat().st_size == RECORDS * per_record
    assert known["index_bytes"] == RECORDS * (per_record + 64)  # and Chroma's id maps


def test_the_schedule_writes_the_reports_metrics_from_cron(stack):
    data, _data_dir, name = stack
    project_dir = data["chroma_project_dir"]
    lines = sh("crontab -l -u root").stdout.splitlines()
    ours = marker(maintain_cron_name(project_dir))
    assert ours in lines
    command = lines[lines.index(ours) + 1].split(None, 5)[5]
    textfile = Path(maintain_textfile(name))
    textfile.unlink(missing_ok=True)
    started = time.monotonic()
    sh(shlex.join([*CRON_ENV, "/bin/sh", "-c", command]))
    print(f"the scheduled report took {time.monotonic() - started:.2f} s")
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(textfile.read_text())
        for s in family.samples
    }
    _code, found = report(data)
    assert samples["chroma_deploy_records"] == found["report"]["records"]
    assert samples["chroma_deploy_collections"] == len(found["report"]["collections"])
    assert samples["chroma_deploy_orphaned_segment_bytes"] == 0
    assert samples["chroma_deploy_data_bytes"] > 0
    print(textfile.read_text())
    # drift.py --textfile writes the same families beside its own.
    drift_file = Path(data["chroma_backup_dir"]).parent / "drift.prom"
    checked = run_drift(data, "--textfile", str(drift_file))
    assert checked.returncode == 0, checked.output
    drift_samples = {
        s.name: s.value
        for family in text_string_to_metric_families(drift_file.read_text())
        for s in family.samples
    }
    assert drift_samples["chroma_deploy_records"] == found["report"]["records"]
    assert drift_samples["chroma_deploy_check_success"] == 1


def test_0_6_3_leaks_too_and_a_vacuum_killed_after_it_ran_is_verified_by_the_next(project):
    """0.6.3 (seen on the real image) keeps a deleted collection's dir as well; its vacuum
    is ``chroma utils vacuum``. A run SIGKILLed right after the vacuum, Chroma stopped, is
    finished by the next: started, compared with the inventory taken before."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_version="0.6.3",
                     chroma_backup_dir=str(project_dir.parent / "backups"))  # fmt: skip
    converge(data)
    port, data_dir = data["chroma_port"], project_dir / "chroma_data"
    add(port, "keep", FEW)
    add(port, "gone", FEW)
    chroma_client(port).delete_collection("gone")
    leaked = segment_dirs(data_dir) - named_segments(data_dir)
    assert leaked, "0.6.3 left no segment dir behind"
    code, found = report(data)
    assert code == 2
    assert [o["name"] for o in found["report"]["orphans"]] == sorted(leaked)
    kept = everything(port)
    size_before = (data_dir / "chroma.sqlite3").stat().st_size
    command = shlex.split(repair_command(Declared(load_settings(data), 0, 0), "vacuum"))
    command[1] = str(ROOT / "files" / "chroma_maintain.py")
    env = {**os.environ, "CHROMA_DEPLOY_MAINTAIN_KILL_AT": "vacuumed"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                            check=False)  # fmt: skip
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert "step: vacuumed" in killed.stdout
    assert (project_dir / ".chroma-deploy/maintain-pending.json").exists()
    assert (data_dir / "chroma.sqlite3").stat().st_size < size_before  # it did run

    done = maintain(data, "--apply", "vacuum")
    output = done.stdout + done.stderr
    assert done.returncode in (0, 2), output
    assert "resuming the vacuum a killed run left" in output
    assert f"{FEW} records before and after" in output
    assert not (project_dir / ".chroma-deploy/maintain-pending.json").exists()
    assert everything(port) == kept
