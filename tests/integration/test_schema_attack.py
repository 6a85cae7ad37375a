"""Attacks on the schema guard (issue 26 §5): each test is a fault an attacker found, fixed."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import (
    PYINFRA,
    ROOT,
    base_data,
    compose_down,
    converge,
    read_records,
    run_deploy,
    run_drift,
    start_command,
    write_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCHEMA_STEP = "Chroma's schema in the data dir before its server validates it"


def schema_init_containers(data_path: str) -> list[str]:
    """The unpublished init-schema servers on ``data_path`` (files/chroma_safety.py's label)."""
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=chroma-deploy.schema-init={data_path}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip


def has_schema(database: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return bool(db.execute("SELECT COUNT(*) FROM migrations").fetchone()[0])
    except sqlite3.Error:
        return False


def killed_while_the_schema_is_made(data: dict, data_path: str) -> bool:
    """SIGKILL the deploy's whole process group once its init-schema server made the schema (the
    step counted by its name in pyinfra's "--> Starting operation" line); False: never got
    there."""
    args = [PYINFRA, "-y", "@local", "deploy.py"]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    process = start_command(args, ROOT, os.environ.copy(), stdout=False)
    assert process.stderr is not None
    for line in process.stderr:
        if "--> Starting operation:" in line and SCHEMA_STEP in line:
            break
    else:
        process.wait()
        return False
    deadline = time.monotonic() + 60
    while not has_schema(Path(data_path) / "chroma.sqlite3") and time.monotonic() < deadline:
        time.sleep(0.05)
    reached = bool(schema_init_containers(data_path))  # its server made the schema: not stopped yet
    os.killpg(process.pid, signal.SIGKILL)
    process.stderr.close()
    process.wait()
    return reached


def test_a_deploy_killed_while_the_schema_is_made_then_converges(project):
    """Attack: a deploy killed while init-schema's server ran left it on the data dir, and
    the next deploy refused it as another Chroma."""
    project_dir, name = project
    data = base_data(project_dir, name)
    data_path = f"{project_dir}/chroma_data"
    try:
        assert killed_while_the_schema_is_made(data, data_path)
        assert schema_init_containers(data_path)  # the killed run's server, left running
        converge(data)
        assert schema_init_containers(data_path) == []
    finally:
        for container in schema_init_containers(data_path):
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def heartbeat(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=3):
            return True
    except OSError:
        return False


def test_segment_dirs_without_their_database_are_not_given_a_fresh_schema(project):
    """Attack: a stopped stack whose chroma.sqlite3 was moved away got a fresh schema from
    init-schema, and the deploy served an empty database with exit 0 while drift said ok."""
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    converge(data)
    write_records(port, per_collection=20)
    compose_down(project_dir)
    data_dir = project_dir / "chroma_data"
    (data_dir / "chroma.sqlite3").rename(project_dir / "chroma.sqlite3.moved")
    segments = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    assert segments  # the HNSW segment dirs of the records are still there

    deployed = run_deploy(data)
    assert deployed.returncode != 0, deployed.output
    assert (
        f"@local: chroma_allow_empty_data_dir: {data_dir} holds {len(segments)} segment dir(s) "
        f"of Chroma ({segments[0]}) but no chroma.sqlite3"
    ) in deployed.output
    assert not (data_dir / "chroma.sqlite3").exists()  # no schema made beside them
    assert sorted(p.name for p in data_dir.iterdir() if p.is_dir()) == segments
    assert run_drift(data, "--no-color").returncode != 0  # and drift does not say ok


def stack_on_tag(
    project: tuple[Path, str],
    backups: Path,
    tag: str,
    names: tuple[str, ...] = ("manuals", "tickets"),
) -> tuple[dict, int, dict[str, list[str]]]:
    """A converged stack of ``tag``'s release, backing up into ``backups``, with 20 records in
    each of ``names``: its data keys, its port, and the ids written (sorted)."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(backups),
                     chroma_version=tag.rsplit(":", 1)[1])  # fmt: skip
    converge(data)
    written = write_records(data["chroma_port"], names, per_collection=20)
    return data, data["chroma_port"], {key: sorted(ids) for key, ids in written.items()}


def served_image(name: str) -> str:
    """The image id the project's chroma container runs."""
    inspected = ["docker", "inspect", "-f", "{{.Image}}", f"{name}-chroma-1"]
    return subprocess.run(inspected, capture_output=True, text=True, check=False).stdout.strip()


def migration_undone(project_dir: Path) -> None:
    """The data one migration behind the image, as data a build without it wrote would be:
    sysdb migration 10 undone under the live server (which validated its schema at start)."""
    database = project_dir / "chroma_data" / "chroma.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("DELETE FROM migrations WHERE dir = 'sysdb' AND version = 10")
        db.execute("ALTER TABLE collections DROP COLUMN schema_str")
        db.commit()


def migrations_applied(project_dir: Path) -> int:
    database = project_dir / "chroma_data" / "chroma.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(
            db.execute("SELECT MAX(version) FROM migrations WHERE dir = 'sysdb'").fetchone()[0]
        )


@pytest.fixture
def release_tags():
    """Two releases newer than any known (the test's own tags on the 1.5.9 build, removed
    after it): what a registry's newer images would be here, where none answers."""
    tags = ["chromadb/chroma:1.99.3", "chromadb/chroma:1.99.4"]
    for tag in tags:
        subprocess.run(["docker", "tag", "chromadb/chroma:1.5.9", tag], check=True)
    yield tags
    subprocess.run(["docker", "image", "rm", *tags], capture_output=True)


def rebuilt(tag: str) -> str:
    """Another build under ``tag`` (a layer-less rebuild: a new image id), as a pull or a
    build of the tag again makes; its id."""
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"],
        input=f"FROM {tag}\nLABEL org.chroma-deploy.test=rebuilt\n",
        text=True, capture_output=True, check=True,
    )  # fmt: skip
    return subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def refusing_rebuild(tag: str) -> None:
    """The tag built again into a build that refuses the data: one whose environment hashes
    migrations with sha256, which 1.5.9 refuses on md5 data, in apply mode too."""
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], capture_output=True,
                   input=f"FROM {tag}\nENV CHROMA_SQLITEDB__HASH_TYPE=sha256\n",
                   text=True, check=True)  # fmt: skip


def test_an_image_changed_under_a_serving_stack_is_upgraded_not_left_refused(
    project, tmp_path, release_tags
):
    """Attack: a deploy that recreated a serving stack on an image that would migrate its
    data (the tag built again; the compose file's image edited by hand to a newer release)
    trusted the file and the running server: no backup, the recreated server refused the
    data, and the stack was down. Both are an upgrade now: backed up, rehearsed, the
    migration applied, serving. One stack, the two in turn."""
    project_dir, name = project
    backups = tmp_path / "backups"
    first, second = release_tags
    data, port, expected = stack_on_tag(project, backups, first)

    # The tag built again while its old build serves (a change of a setting recreates it).
    migration_undone(project_dir)
    new_id = rebuilt(first)
    upgraded = run_deploy(dict(data, chroma_stop_grace_seconds=30))
    assert upgraded.returncode == 0, upgraded.output
    assert "names another build than" in upgraded.output
    assert heartbeat(port) and read_records(port) == expected, upgraded.output
    assert migrations_applied(project_dir) == 10  # applied after the backup
    assert len(list(backups.glob(f"{name}-*-before-*.tar.gz"))) == 1, upgraded.output
    assert served_image(name) == new_id
    converge(dict(data, chroma_stop_grace_seconds=30))

    # The compose file's image edited by hand to a newer release, the old server serving.
    migration_undone(project_dir)
    compose_file = project_dir / "docker-compose.yml"
    compose_file.write_text(compose_file.read_text().replace(first, second))
    upgraded = run_deploy(dict(data, chroma_version=second.rsplit(":", 1)[1]))
    assert upgraded.returncode == 0, upgraded.output
    assert heartbeat(port) and read_records(port) == expected, upgraded.output
    assert migrations_applied(project_dir) == 10
    assert len(list(backups.glob(f"{name}-*-before-*.tar.gz"))) == 2, upgraded.output
