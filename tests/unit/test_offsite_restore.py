"""files/chroma_offsite_restore.py with real restic on a local repository and a stand-in docker.

The snapshots are taken by the backup program, files/chroma_offsite.py backup
(tests/offsite_repository.py; only the one whose manifest lies is forged, in its
layout), from a Chroma-like chroma.sqlite3 with two databases; the project dir's
name holds a space and both quotes. The stand-in docker (test_host_programs.py's) logs each call:
a restore must stop the stack only for the switch, and a refusal must stop nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from offsite_repository import init_repository, take_snapshot, write_offsite
from test_chroma_safety import chroma_like_sqlite
from test_host_programs import FAKE_DOCKER, docker_calls, steps

FILES = Path(__file__).resolve().parent.parent.parent / "files"
PROJECT = "fx"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One repository for the module (restic's calls are the cost): host A's snapshots.

    In order: ``first``; ``older_version`` (tagged 0.6.3); ``differs`` (its manifest
    lists no collection); ``newest`` (other segment bytes); then a newer snapshot of
    another project, which is never this project's latest.
    """
    base = tmp_path_factory.mktemp("offsite")
    repository, metrics = base / "repo", base / "metrics"
    old = base / "host A" / 'it\'s a "project"'
    (old / "chroma_data").mkdir(parents=True)
    chroma_like_sqlite(old / "chroma_data" / "chroma.sqlite3").close()
    (old / "chroma_data" / "segment.bin").write_bytes(b"vectors of host A")
    config = write_offsite(old, PROJECT, str(repository), "hostA", metrics)
    init_repository(config)
    found = {"repository": repository, "metrics": metrics}
    found["first"] = take_snapshot(config, "1.5.9")
    found["older_version"] = take_snapshot(config, "0.6.3")
    found["differs"] = take_snapshot(config, "1.5.9", {"collections": {}, "project": PROJECT})
    (old / "chroma_data" / "segment.bin").write_bytes(b"host A, later")
    found["newest"] = take_snapshot(config, "1.5.9")
    take_snapshot(write_offsite(old, "other", str(repository), "hostC", metrics), "1.5.9")
    return found


@pytest.fixture
def site(repository: dict, tmp_path: Path) -> dict:
    """Host B's project, the stack never run on it: an empty data dir, a compose file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    new = tmp_path / "host B" / 'it\'s a "project"'
    (new / "chroma_data").mkdir(parents=True)
    (new / "chroma_data" / ".gitkeep").write_text("")
    (new / "docker-compose.yml").write_text("services: {}\n")
    config = write_offsite(new, PROJECT, str(repository["repository"]), "hostB",
                           repository["metrics"])  # fmt: skip
    log = tmp_path / "docker.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(log)}
    return {**repository, "new": new, "b": config, "env": env, "log": log}


def program(site: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FILES / "chroma_offsite_restore.py"), *args],
        capture_output=True, text=True, timeout=300, env=site["env"],
    )  # fmt: skip


def restore(site: dict, snapshot: str, *extra: str) -> subprocess.CompletedProcess[str]:
    new = site["new"]
    return program(
        site, "restore", "--config", str(site["b"]), "--snapshot", snapshot,
        "--data-dir", "chroma_data", "--uid", str(os.getuid()), "--gid", str(os.getgid()),
        "--mode", "750", "--pending", f"{new}/.chroma-deploy/restore-pending.json",
        "--manifest-out", f"{new}/.chroma-deploy/snapshot-manifest.json",
        "--project-dir", str(new), "--project-name", PROJECT,
        "--compose-file", f"{new}/docker-compose.yml", "--wait-timeout", "7", *extra,
    )  # fmt: skip


def untouched(site: dict) -> None:
    """Host B as it was: its (empty) data dir in place, no staging, no record, nothing stopped."""
    new = site["new"]
    assert sorted(os.listdir(new / "chroma_data")) == [".gitkeep"]
    assert sorted(p.name for p in new.iterdir()) == [".chroma-deploy", "chroma_data",
                                                     "docker-compose.yml"]  # fmt: skip
    assert sorted(p.name for p in (new / ".chroma-deploy").iterdir()) == ["offsite.json",
                                                                          "restic"]  # fmt: skip
    assert docker_calls({"log": site["log"]}) == []


def test_no_snapshot_of_the_project_and_an_unknown_snapshot_are_refused_with_one_line(
    site: dict,
):
    write_offsite(site["new"], "nobody", str(site["repository"]), "hostB", site["metrics"])
    done = restore(site, "latest")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "chroma_restore_snapshot: the repository holds no snapshot of project nobody: "
        "nothing was changed; check chroma_backup_repository and chroma_compose_project (the "
        "project name the backups were tagged with)"
    ]
    untouched(site)
    write_offsite(site["new"], PROJECT, str(site["repository"]), "hostB", site["metrics"])
    done = restore(site, "0123abcd")
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(
        f"chroma_restore_snapshot: 0123abcd names no snapshot of project {PROJECT} (4 in the "
        f"repository, the newest {site['newest'][:8]} of "
    )
    assert line.endswith(
        f"nothing was changed; name one of them (restic snapshots --tag project={PROJECT}), or "
        "latest"
    )
    untouched(site)


def test_latest_is_the_projects_newest_from_any_host_and_is_switched_in_with_the_old_aside(
    site: dict,
):
    newest, first = site["newest"], site["first"]
    done = restore(site, "latest")
    assert done.returncode == 0, done.stderr
    new = site["new"]
    pending = json.loads((new / ".chroma-deploy" / "restore-pending.json").read_text())
    assert pending["archive"] == f"snapshot {json.loads(listing(site))[-1]['id']}"
    assert pending["archive"].startswith(f"snapshot {newest}")
    aside = Path(pending["aside"])
    assert sorted(os.listdir(aside)) == [".gitkeep"]  # moved aside, never deleted
    assert (new / "chroma_data" / "segment.bin").read_bytes() == b"host A, later"
    assert oct((new / "chroma_data").stat().st_mode & 0o777) == "0o750"
    assert not (new / ".chroma_data.restore-staging").exists()
    kept = json.loads((new / ".chroma-deploy" / "snapshot-manifest.json").read_text())
    assert kept["project"] == PROJECT and kept["snapshot"].startswith(newest)
    assert sorted(kept["collections"]) == ["default_tenant/default_database/docs",
                                           "default_tenant/other/docs"]  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[-2].startswith(f"snapshot {newest} (taken on hostA at ")
    assert lines[-2].endswith(
        "Chroma 1.5.9) restored and checked against its manifest: 2 collections, 2 records"
    )
    assert lines[-1] == f"the data before the restore is in {aside}"
    assert steps(docker_calls({"log": site["log"]})) == ["compose stop"]  # only for the switch
    # An id restores that snapshot (the first one), the restored data aside in its turn.
    done = restore(site, first)
    assert done.returncode == 0, done.stderr
    assert (new / "chroma_data" / "segment.bin").read_bytes() == b"vectors of host A"
    asides = sorted(new.glob("chroma_data.before-restore-*"))
    assert len(asides) == 2 and (asides[1] / "segment.bin").read_bytes() == b"host A, later"


def listing(site: dict) -> str:
    found = program(site, "snapshots", "--config", str(site["b"]))
    assert found.returncode == 0, found.stderr
    return json.dumps(json.loads(found.stdout)["snapshots"])


def test_a_snapshot_of_another_version_or_whose_files_differ_from_its_manifest_is_refused(
    site: dict,
):
    done = restore(site, site["older_version"], "--version", "1.5.9")
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"chroma_restore_snapshot: snapshot {site['older_version']} ")
    assert line.endswith(
        "Chroma 0.6.3) was taken on Chroma 0.6.3, and this run prepared Chroma 1.5.9 (restic and "
        "the repository's files were not on the host when it started): nothing was changed to "
        "the data; run the same command again: it restores on the snapshot's version"
    )
    untouched(site)
    done = restore(site, site["differs"])
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert "1.5.9) differ from its manifest (default_tenant/default_database/docs: not " in line
    assert line.endswith(
        "nothing was changed; restore another snapshot, and run restic check on the repository"
    )
    untouched(site)


def test_a_wrong_password_is_one_line_that_names_the_key(site: dict):
    (site["new"] / ".chroma-deploy" / "restic" / "restic-password").write_text("not it\n")
    done = restore(site, "latest")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "chroma_backup_password_file: reading the snapshot list: wrong password (restic: Fatal: "
        "wrong password or no key found); nothing was changed: the password does not open the "
        "repository; name the file that holds the password the backups were made with"
    ]
    assert "not it" not in done.stdout + done.stderr
    untouched(site)


def test_a_drill_that_cannot_start_the_snapshots_version_records_a_failure(site: dict):
    done = program(site, "drill", "--config", str(site["b"]), "--image", "chromadb/chroma:1.5.9",
                   "--persist-path", "/data", "--uid", str(os.getuid()),
                   "--gid", str(os.getgid()))  # fmt: skip
    assert done.returncode == 1
    metrics = site["metrics"] / f"{PROJECT}-drill.prom"
    [line] = done.stderr.splitlines()
    assert line.startswith(
        f"restore drill: FAIL: chroma_image: chromadb/chroma:1.5.9, the version snapshot "
        f"{site['newest']} (taken on hostA at "
    )
    assert line.endswith(
        "Chroma 1.5.9) was taken with, is not on this host; deploy it once, then drill again; "
        f"the live stack was not touched; {metrics}"
    )
    text = metrics.read_text()
    assert f'chroma_deploy_restore_drill_success{{project="{PROJECT}"}} 0\n' in text
    stamp = [line for line in text.splitlines() if line.startswith(
        "chroma_deploy_restore_drill_timestamp_seconds")]  # fmt: skip
    assert len(stamp) == 1 and abs(float(stamp[0].split()[-1]) - time.time()) < 60
    assert not (site["new"] / ".chroma-deploy" / "restore-drill").exists()
    assert sorted(os.listdir(site["new"] / "chroma_data")) == [".gitkeep"]  # never touched
    assert "compose" not in " ".join(steps(docker_calls({"log": site["log"]})))


def test_a_compose_project_name_in_the_env_is_refused_before_the_data_moves(site: dict):
    """compose obeys .env over -f: `stop` would stop another project, and the data dir would
    be switched under a Chroma still serving it (the restore of an existing host)."""
    env = site["new"] / ".env"
    env.write_text("export COMPOSE_PROJECT_NAME=elsewhere\n")
    try:
        done = restore(site, "latest")
    finally:
        env.unlink()
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"chroma_project_dir: {site['new']}/.env sets COMPOSE_PROJECT_NAME, ")
    assert "nothing was changed" in line
    untouched(site)


def test_latest_is_the_newest_snapshot_with_records_and_this_hosts_own_first(tmp_path: Path):
    """Host B's snapshot, then host A's, then host A's newest of no records (made before the
    backup program tagged snapshots with their records: its manifest is read). Latest, on
    host B: its own; on host C (a new machine): host A's with records, not the empty one."""
    repository, metrics = tmp_path / "repo", tmp_path / "metrics"
    configs = {}
    for host in ("hostA", "hostB", "hostC"):
        project_dir = tmp_path / host / "project"
        (project_dir / "chroma_data").mkdir(parents=True)
        chroma_like_sqlite(project_dir / "chroma_data" / "chroma.sqlite3").close()
        configs[host] = write_offsite(project_dir, PROJECT, str(repository), host, metrics)
    init_repository(configs["hostA"])
    own = take_snapshot(configs["hostB"], "1.5.9")
    records = take_snapshot(configs["hostA"], "1.5.9")
    take_snapshot(configs["hostA"], "1.5.9", {"collections": {}, "project": PROJECT})

    def chosen(host: str, project: str = PROJECT) -> dict:
        config = configs[host]
        if project != PROJECT:
            config = write_offsite(config.parent.parent, project, str(repository), host, metrics)
        done = subprocess.run(
            [sys.executable, str(FILES / "chroma_offsite_restore.py"), "snapshots", "--config",
             str(config), "--snapshot", "latest"], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert chosen("hostB")["chosen"]["short_id"] == own
    found = chosen("hostC")
    assert [s["records"] for s in found["snapshots"]] == [2, 2, 0]  # the last: no tag, read
    assert found["chosen"]["short_id"] == records
    # A project whose only snapshot holds no record: latest names none, in one line.
    empty = take_snapshot(
        write_offsite(configs["hostA"].parent.parent, "empty", str(repository), "hostA", metrics),
        "1.5.9", {"collections": {}, "project": "empty"},
    )  # fmt: skip
    refused = chosen("hostC", "empty")
    assert refused["chosen"] is None
    assert refused["fault"] == (
        f"chroma_restore_snapshot: none of the 1 snapshots of project empty holds a record (the "
        f"newest {empty[:8]} of {refused['snapshots'][0]['time'][:19]}Z), so latest names none: "
        "nothing was changed; to restore an empty database, name its id (restic snapshots --tag "
        "project=empty)"
    )
