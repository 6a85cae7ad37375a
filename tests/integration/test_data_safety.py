"""Backups, restores and the persistence proof, with real data from the real client."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DeployRun,
    base_data,
    chroma_client,
    compose_down,
    converge,
    read_records,
    run_deploy,
    sh,
    write_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run(deploy_file: str, data: dict) -> DeployRun:
    return run_deploy(data, deploy_file=deploy_file, timeout=600)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """One converged stack with 20 records, shared by the tests after which it must serve
    the same records (the proof, backups, refused restores): each reads them before and after.
    Each test names its own backup dir."""
    name = f"cdtest{uuid.uuid4().hex[:8]}"
    project_dir = tmp_path_factory.mktemp(name) / "stack"
    data = base_data(project_dir, name)
    try:
        converge(data)
        write_records(data["chroma_port"], per_collection=10)
        yield project_dir, name, data
    finally:
        if (project_dir / "docker-compose.yml").exists():
            compose_down(project_dir)
        sh(f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
           "2>/dev/null", check=False)  # fmt: skip


def test_persistence_proof_passes_and_leaves_no_canary(served):
    _, _, data = served
    before = read_records(data["chroma_port"])
    assert sum(map(len, before.values())) == 20
    result = run("prove.py", data)
    assert result.returncode == 0, result.output
    assert read_records(data["chroma_port"]) == before


def test_backup_then_changes_then_restore_gives_back_exactly_the_backup(project, tmp_path):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(data)
    written = write_records(port, ("books", "papers"), per_collection=100)
    backed_up = read_records(port)
    assert run("backup.py", data).returncode == 0
    archives = sorted((tmp_path / "backups").glob(f"{name}-*.tar.gz"))
    assert len(archives) == 1
    manifest = json.loads(archives[0].with_suffix("").with_suffix(".json").read_text())
    assert {k: v["count"] for k, v in manifest["collections"].items()} == {
        "default_tenant/default_database/books": 100,
        "default_tenant/default_database/papers": 100,
    }
    assert manifest["project"] == name and manifest["version"] == "1.5.9"

    books = chroma_client(port).get_collection("books", embedding_function=None)
    books.delete(ids=written["books"][:10])
    books.add(ids=["late-arrival"], embeddings=[[1.0, 2.0, 3.0, 4.0]])
    chroma_client(port).delete_collection("papers")
    assert read_records(port) != backed_up

    restore = dict(data, chroma_restore_archive=str(archives[0]))
    result = run("restore.py", restore)
    assert result.returncode == 0, result.output
    assert read_records(port) == backed_up
    aside = list(project_dir.glob("chroma_data.before-restore-*"))
    assert len(aside) == 1 and (aside[0] / "chroma.sqlite3").is_file()  # never deleted
    again = run("restore.py", restore)  # the same archive again: no change
    assert again.result["totals"]["success"] == 0
    converge(data)


def test_corrupt_archive_is_refused_and_nothing_changes(served, tmp_path):
    project_dir, _, shared = served
    data = dict(shared, chroma_backup_dir=str(tmp_path / "backups"))
    assert run("backup.py", data).returncode == 0
    archive = next((tmp_path / "backups").glob("*.tar.gz"))
    archive.write_bytes(archive.read_bytes()[:-8] + b"corrupt!")
    before = read_records(data["chroma_port"])
    result = run("restore.py", dict(data, chroma_restore_archive=str(archive)))
    assert result.returncode != 0
    assert (
        f"{archive} does not match its .sha256 (damaged, or changed since backup.py wrote "
        "it): nothing was changed" in result.stderr
    )
    assert read_records(data["chroma_port"]) == before
    assert not list(project_dir.glob("chroma_data.before-restore-*"))


def test_backup_keep_prunes_only_this_projects_oldest(served, tmp_path):
    _, name, shared = served
    backups = tmp_path / "backups"
    backups.mkdir()
    other = backups / "otherproject-20200101T000000Z.tar.gz"
    other.write_text("not ours")
    data = dict(shared, chroma_backup_dir=str(backups), chroma_backup_keep=2)
    for _ in range(3):
        assert run("backup.py", data).returncode == 0
        subprocess.run(["sleep", "1.1"], check=True)  # archive names have second resolution
    ours = sorted(backups.glob(f"{name}-*.tar.gz"))
    assert len(ours) == 2
    assert other.read_text() == "not ours"


def test_missing_archive_is_named_as_missing_and_nothing_changes(served, tmp_path):
    """It was reported as a checksum mismatch (`sha256sum: ...: No such file or directory`)."""
    project_dir, name, shared = served
    data = dict(shared, chroma_backup_dir=str(tmp_path / "backups"))
    before = read_records(data["chroma_port"])
    missing = str(tmp_path / "backups" / f"{name}-20200101T000000Z.tar.gz")
    result = run("restore.py", dict(data, chroma_restore_archive=missing))
    assert result.returncode != 0
    assert f"no archive at {missing}: nothing was changed" in result.output
    assert "does not match" not in result.output
    assert read_records(data["chroma_port"]) == before
    assert not list(project_dir.glob("chroma_data.before-restore-*"))


def test_restoring_the_same_archive_after_the_data_changed_restores_again(project, tmp_path):
    """The marker was keyed by the archive's name: a second restore silently did nothing."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(data)
    write_records(port, ("first",), per_collection=40)
    backed_up = read_records(port)
    assert run("backup.py", data).returncode == 0
    restore = dict(data, chroma_restore_archive=str(next((tmp_path / "backups").glob("*.tar.gz"))))
    assert run("restore.py", restore).returncode == 0
    write_records(port, ("second",), per_collection=10)  # the data changes after the restore
    again = run("restore.py", restore)
    assert again.returncode == 0, again.output
    assert again.result["totals"]["success"] == 1
    assert read_records(port) == backed_up
    assert len(list(project_dir.glob("chroma_data.before-restore-*"))) == 2  # both kept
