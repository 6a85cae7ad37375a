"""The backup, restore and record-writing steps of files/chroma_safety.py, run on real files.

They were shell programs in Python strings (operations/data_safety.py,
operations/upgrade.py) that wrote JSON with printf; now they are subcommands
that take arguments and write JSON with a JSON writer. Here they run as the
host runs them, on a project dir whose path holds a space and both quotes,
with a stand-in ``docker`` on PATH that logs each call and answers as a host
with one stopped-and-started stack would (tar, sha256sum, chown are real).
Every record is read back with a JSON reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from test_chroma_safety import chroma_like_sqlite

from facts.compose import VERDICT_RECORD, verdict_key_command

FILES = Path(__file__).resolve().parent.parent.parent / "files"
IDS = ("bbb222", "aaa111")  # the project's containers, as docker ps lists them (unsorted)

# Logs its argv as one JSON line; answers `ps` with the ids, `config --hash` with a
# service's hash, and `ps --status running` with one id when the stack runs.
FAKE_DOCKER = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["ps"]:
    print("\\n".join({list(IDS)!r}))
elif "--hash" in args:
    print("chroma 5eadbeef")
elif "--status" in args:
    print(os.environ.get("RUNNING", ""))
"""


@pytest.fixture
def host(tmp_path: Path) -> dict[str, object]:
    """A project dir with a hostile name, its data dir, a compose file and a fake docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    project_dir = tmp_path / 'it\'s a "project" dir'
    data_dir = project_dir / "chroma_data"
    data_dir.mkdir(parents=True)
    (data_dir / "segment.bin").write_bytes(b"the data")
    (project_dir / "docker-compose.yml").write_text("services: {}\n")
    log = tmp_path / "docker.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(log)}
    return {"project_dir": project_dir, "data_dir": data_dir, "log": log, "env": env,
            "backups": tmp_path / "back ups' \"here\""}  # fmt: skip


def safety(host: dict, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FILES / "chroma_safety.py"), *args],
        capture_output=True, text=True, timeout=60, env={**host["env"], **env},  # type: ignore[dict-item]
    )  # fmt: skip


def docker_calls(host: dict) -> list[list[str]]:
    log = host["log"]
    assert isinstance(log, Path)
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def stack_options(host: dict) -> list[str]:
    project_dir = str(host["project_dir"])
    return ["--project-dir", project_dir, "--project-name", "fx",
            "--compose-file", f"{project_dir}/docker-compose.yml", "--wait-timeout", "7",
            "--verdict", f"{project_dir}/{VERDICT_RECORD}"]  # fmt: skip


def steps(calls: list[list[str]]) -> list[str]:
    """Each docker call by what it does: ``compose stop``, ``compose up``, ``ps``..."""
    named = []
    for call in calls:
        if call[0] == "compose":
            verb = call[call.index("-f") + 2]
            named.append(f"compose {verb}{' --hash' if '--hash' in call else ''}")
        else:
            named.append(call[0])
    return named


def test_an_upgrades_backup_writes_its_record_with_a_json_writer_and_leaves_the_stack_stopped(
    host: dict,
):
    project_dir, backups = host["project_dir"], host["backups"]
    record = Path(f"{project_dir}/.chroma-deploy/upgrade-pending.json")
    upgrade_backup = [
        "backup", *stack_options(host), "--data-dir", "chroma_data",
        "--backup-dir", str(backups), "--version", "0.6.3", "--before-version", "1.5.9",
        "--no-restart", "--record", str(record), "--field", "kind=upgrade",
        "--field", "subject=0.6.3", "--field", "from=0.6.3", "--field", "to=1.5.9",
        "--skip-without-data",
    ]  # fmt: skip
    done = safety(host, *upgrade_backup)
    # No chroma.sqlite3: nothing to back up, said, and nothing stopped.
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no data yet: Chroma 0.6.3 -> 1.5.9 needs no backup\n"
    assert not record.exists() and not Path(str(backups)).exists() and docker_calls(host) == []

    chroma_like_sqlite(f"{project_dir}/chroma_data/chroma.sqlite3").close()
    done = safety(host, *upgrade_backup)
    assert done.returncode == 0, done.stderr
    archives = sorted(Path(str(backups)).glob("fx-*-before-1.5.9.tar.gz"))
    assert len(archives) == 1
    archive = str(archives[0])
    assert done.stdout.splitlines()[-1] == f"backup written: {archive}"
    assert steps(docker_calls(host)) == ["compose stop"]  # stopped until the switch
    found = json.loads(record.read_text())
    manifest = json.loads(Path(archive.removesuffix(".tar.gz") + ".json").read_text())
    assert found == {"kind": "upgrade", "subject": "0.6.3", "from": "0.6.3", "to": "1.5.9",
                     "backup": archive, "before": manifest}  # fmt: skip
    assert manifest["project"] == "fx" and manifest["version"] == "0.6.3"
    assert manifest["before_version"] == "1.5.9"
    assert sorted(manifest["collections"]) == ["default_tenant/default_database/docs",
                                               "default_tenant/other/docs"]  # fmt: skip
    with tarfile.open(archive) as opened:
        assert "chroma_data/segment.bin" in opened.getnames()
    sums = Path(archive.removesuffix(".tar.gz") + ".sha256").name
    checked = subprocess.run(["sha256sum", "-c", sums], cwd=str(backups), capture_output=True,
                             text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert oct(Path(str(backups)).stat().st_mode & 0o777) == "0o700"
    assert oct(Path(archive).stat().st_mode & 0o777) == "0o600"
    assert not list(Path(str(backups)).glob("*.tmp")) and not list(record.parent.glob("*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert (
        record.parent.stat().st_mode & 0o777 == 0o777 & ~umask
    )  # the state dir as deploys make it
    assert record.stat().st_mode & 0o777 == 0o600


def test_a_backup_starts_the_stack_again_and_records_composes_verdict_as_the_fact_reads_it(
    host: dict,
):
    project_dir = host["project_dir"]
    (Path(str(project_dir)) / ".env").write_text("X=1\n")
    done = safety(host, "backup", *stack_options(host), "--data-dir", "chroma_data",
                  "--backup-dir", str(host["backups"]), "--version", "1.5.9")  # fmt: skip
    assert done.returncode == 0, done.stderr
    verdict = ["ps", "compose config --hash"]
    assert steps(docker_calls(host)) == ["compose stop", "compose up", *verdict]
    up = docker_calls(host)[1]
    assert up[-6:] == ["up", "--detach", "--no-recreate", "--wait", "--wait-timeout", "7"]
    # The key the shell of facts/compose.py computes (as ComposeStack compares it).
    shell = subprocess.run(
        ["bash", "-c", f"{verdict_key_command(str(project_dir), 'fx')}; printf '%s' \"$key\""],
        capture_output=True, text=True, env=host["env"], check=True,  # type: ignore[arg-type]
    )  # fmt: skip
    written = Path(f"{project_dir}/{VERDICT_RECORD}").read_text()
    lines = written.split("\n")
    assert "\n".join(lines[:2]) == shell.stdout
    assert lines[1] == "aaa111 bbb222 " and lines[2:] == ["chroma 5eadbeef", ""]
    compose = Path(f"{project_dir}/docker-compose.yml").read_bytes() + b"X=1\n"
    assert lines[0] == hashlib.sha256(compose).hexdigest()


def test_a_backup_without_the_compose_file_stops_its_containers_with_the_declared_grace(
    host: dict,
):
    """Found by their compose label, stopped by `docker stop`: with --stop-grace, not with
    the timeout each container was made with (Docker's 10 s), then started again."""
    project_dir = host["project_dir"]
    Path(f"{project_dir}/docker-compose.yml").unlink()
    done = safety(host, "backup", *stack_options(host), "--data-dir", "chroma_data",
                  "--backup-dir", str(host["backups"]), "--version", "1.5.9",
                  "--stop-grace", "75")  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls = docker_calls(host)
    assert steps(calls) == ["ps", "stop", "start"]
    assert calls[1] == ["stop", "--time", "75", *IDS]
    assert calls[2] == ["start", *IDS]


@pytest.mark.parametrize("leave_stopped", [[], ["--no-restart"]], ids=["backup", "no-restart"])
def test_a_backup_that_fails_starts_the_stack_again_and_leaves_no_archive(
    host: dict, leave_stopped: list[str]
):
    """--no-restart (an upgrade's, maintain.py's) leaves it stopped only after a backup."""
    project_dir, backups = host["project_dir"], host["backups"]
    Path(f"{project_dir}/chroma_data").rename(f"{project_dir}/elsewhere")  # tar finds nothing
    done = safety(host, "backup", *stack_options(host), "--data-dir", "chroma_data",
                  "--backup-dir", str(backups), "--version", "1.5.9",
                  *leave_stopped)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "the backup failed; the stack was started again"
    assert steps(docker_calls(host))[:2] == ["compose stop", "compose up"]
    assert sorted(p.name for p in Path(str(backups)).iterdir() if p.name.endswith(".tar.gz")) == []


def archive_of(host: dict, content: bytes) -> Path:
    """A .tar.gz of a chroma_data/ holding ``content``, as backup.py writes one."""
    source = Path(str(host["project_dir"])).parent / "source"
    (source / "chroma_data").mkdir(parents=True)
    (source / "chroma_data" / "segment.bin").write_bytes(content)
    archive = Path(str(host["backups"])) / "fx-20261207T000000Z.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(source), "-czf", str(archive), "chroma_data"], check=True)
    return archive


def restore(host: dict, archive: Path, *extra: str, running: str = "") -> tuple:
    pending = Path(f"{host['project_dir']}/.chroma-deploy/restore-pending.json")
    done = safety(
        host, "restore", *stack_options(host), "--archive", str(archive),
        "--data-dir", "chroma_data", "--uid", str(os.getuid()), "--gid", str(os.getgid()),
        "--mode", "750", "--pending", str(pending), *extra, RUNNING=running,
    )  # fmt: skip
    return done, pending


def test_a_restore_moves_the_data_aside_and_names_it_in_a_json_pending_record(host: dict):
    project_dir, data_dir = Path(str(host["project_dir"])), Path(str(host["data_dir"]))
    archive = archive_of(host, b"the backed-up data")
    switch = project_dir / "docker-compose.yml.chroma-deploy.restore"
    switch.write_text("services: {version: archive}\n")
    done, pending = restore(host, archive, "--switch", str(switch), running="aaa111")
    assert done.returncode == 0, done.stderr
    record = json.loads(pending.read_text())
    assert record["archive"] == str(archive) and sorted(record) == ["archive", "aside"]
    aside = Path(record["aside"])
    assert aside.parent == project_dir and aside.name.startswith("chroma_data.before-restore-")
    assert done.stdout.splitlines()[-1] == f"the data before the restore is in {aside}"
    assert (aside / "segment.bin").read_bytes() == b"the data"  # moved aside, never deleted
    assert (data_dir / "segment.bin").read_bytes() == b"the backed-up data"
    assert oct(data_dir.stat().st_mode & 0o777) == "0o750"
    assert (project_dir / "docker-compose.yml").read_text() == "services: {version: archive}\n"
    assert not switch.exists() and not (project_dir / ".chroma_data.restore-staging").exists()
    # Stopped here; started by the next command (stack.compose_up), not by this one.
    assert steps(docker_calls(host)) == ["compose ps", "compose stop"]


def test_a_restore_that_cannot_unpack_changes_nothing_and_starts_only_a_stack_that_ran(
    host: dict,
):
    project_dir, data_dir = Path(str(host["project_dir"])), Path(str(host["data_dir"]))
    archive = Path(str(host["backups"])) / "fx-20261207T000000Z.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"not a gzip")
    switch = project_dir / "docker-compose.yml.chroma-deploy.restore"
    for running, started in (("aaa111", True), ("", False)):
        switch.write_text("services: {}\n")
        host["log"].unlink(missing_ok=True)  # type: ignore[attr-defined]
        done, pending = restore(host, archive, "--switch", str(switch), running=running)
        assert done.returncode == 1
        staging = project_dir / ".chroma_data.restore-staging"
        assert done.stderr.splitlines()[-1] == (
            f"{archive} could not be unpacked into {staging}: nothing was changed"
        )
        assert not staging.exists() and not switch.exists() and not pending.exists()
        assert (data_dir / "segment.bin").read_bytes() == b"the data"
        assert sorted(p.name for p in project_dir.iterdir()) == [
            ".chroma-deploy", "chroma_data", "docker-compose.yml"]  # fmt: skip
        assert ("compose up" in steps(docker_calls(host))) is started


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_restore_the_server_does_not_confirm_keeps_its_pending_record(host: dict, tmp_path):
    manifest = tmp_path / "fx.json"
    manifest.write_text(json.dumps({"collections": {}}))
    pending, marker = tmp_path / "restore-pending.json", tmp_path / "restored-fx.tar.gz"
    pending.write_text("{}")
    done = safety(
        host, "restored", "--manifest", str(manifest), "--url",
        f"http://127.0.0.1:{closed_port()}", "--marker", str(marker), "--pending", str(pending),
        "--archive", "fx.tar.gz", "--target", "/srv/x y/chroma_data",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ("restored data does not match the backup manifest; "
                                            "the data before the restore is kept beside "
                                            "/srv/x y/chroma_data")  # fmt: skip
    assert pending.exists() and not marker.exists()


def test_a_vector_sample_from_a_server_that_does_not_answer_leaves_no_file(host: dict, tmp_path):
    out = tmp_path / "state 'x'" / "upgrade-vectors.json"
    sqlite = tmp_path / "chroma.sqlite3"
    for exists, said in ((False, ""), (True, "Chroma 0.6.3 did not answer: the upgrade's "
                                              "verification compares no vectors\n")):  # fmt: skip
        if exists:
            sqlite.write_bytes(b"")
        out.parent.mkdir(exist_ok=True)
        out.write_text("a sample of an earlier run")
        done = safety(host, "sample-vectors", "--url", f"http://127.0.0.1:{closed_port()}",
                      "--sqlite", str(sqlite), "--out", str(out), "--version", "0.6.3")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == said and not out.exists()


def test_the_three_readers_of_a_segment_dirs_name_agree(tmp_path: Path):
    """A segment dir is named by a UUID: facts/project.py's shell glob (SafetyState), and the
    patterns of files/chroma_schema.py (DataSchema) and files/chroma_safety.py (the
    schedule's guard) must take and leave the same names."""
    import re

    from facts.project import SEGMENT_GLOB

    names = ["5d0c8b2e-6f1a-4f0e-9a51-2b7c5e1d9f20", "5D0C8B2E-6F1A-4F0E-9A51-2B7C5E1D9F20",
             "5d0c8b2e-6f1a-4f0e-9a51-2b7c5e1d9f2", "5d0c8b2e-6f1a-4f0e-9a51-2b7c5e1d9f20x",
             "orphans-20261207T210716Z", "not-a-segment"]  # fmt: skip
    for name in names:
        (tmp_path / name).mkdir()
    globbed = subprocess.run(
        ["sh", "-c", f'for d in "$1"/{SEGMENT_GLOB}; do test -d "$d" && echo "${{d##*/}}"; done',
         "-", str(tmp_path)], capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    pattern = re.compile(r'SEGMENT_DIR = re\.compile\(r"([^"]+)"\)')
    for program in ("chroma_schema.py", "chroma_safety.py"):
        regex = re.compile(pattern.search((FILES / program).read_text()).group(1))
        assert sorted(n for n in names if regex.fullmatch(n)) == sorted(globbed), program
    assert globbed == ["5d0c8b2e-6f1a-4f0e-9a51-2b7c5e1d9f20"]
