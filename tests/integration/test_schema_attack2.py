"""Attacks on the schema guard (issue 26 §5), second round: each test is a fault an attacker
found on the real 1.5.9 image (its docstring says what happened), fixed since."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import (
    ROOT,
    base_data,
    compose_down,
    converge,
    read_records,
    run_deploy,
    run_drift,
    sh,
    write_records,
)
from test_schema_attack import (
    heartbeat,
    migration_undone,
    migrations_applied,
    rebuilt,
    served_image,
    stack_on_tag,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_an_emptied_database_beside_its_segment_dirs_is_not_given_a_fresh_schema(project):
    """A stopped stack whose chroma.sqlite3 was truncated to 0 bytes (a full disk, a copy
    that failed, ``: > chroma.sqlite3``), its segment dirs still there: the deploy must refuse
    as it does when the file is missing, not make a fresh schema and serve an empty database."""
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    converge(data)
    write_records(port, per_collection=20)
    compose_down(project_dir)
    data_dir = project_dir / "chroma_data"
    (data_dir / "chroma.sqlite3").write_bytes(b"")
    segments = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    assert segments  # the HNSW segment dirs of the records are still there

    deployed = run_deploy(data)
    served = read_records(port) if deployed.returncode == 0 else None
    drift = run_drift(data, "--no-color")
    assert deployed.returncode != 0, (served, deployed.output)
    assert "chroma_allow_empty_data_dir" in deployed.output, deployed.output
    assert (data_dir / "chroma.sqlite3").stat().st_size == 0  # no schema made beside them
    assert drift.returncode != 0, drift.output


def test_the_archive_an_upgrade_took_of_data_behind_its_image_restores(project, tmp_path, own_tag):
    """Attack: the way back from an upgrade, restore.py of the archive the upgrade took first,
    left the stack down. Data one migration behind its image (an older 1.x release's), the
    tag built again: the upgrade labels its archive with the oldest known release that opens
    the data (1.5.9), and the restore started that release on it, validating its schema:
    refused (UnappliedMigrationsFound), exit 1, restarting. Now the restore's first start
    applies the archive's migrations (init-schema --restored), then the stack validates."""
    project_dir, name = project
    backups = tmp_path / "backups"
    data, port, expected = stack_on_tag(project, backups, own_tag)
    migration_undone(project_dir)
    rebuilt(own_tag)
    upgraded = run_deploy(data)
    assert upgraded.returncode == 0, upgraded.output
    assert migrations_applied(project_dir) == 10
    archives = list(backups.glob(f"{name}-*-before-*.tar.gz"))
    assert len(archives) == 1, upgraded.output

    restored = run_deploy(dict(data, chroma_restore_archive=str(archives[0])),
                          deploy_file="restore.py", timeout=600)  # fmt: skip
    served = read_records(port) if heartbeat(port) else None
    assert restored.returncode == 0, restored.output
    assert served == expected


def test_a_backup_and_a_vacuum_under_a_tag_built_again_keep_the_build_that_serves(
    project, tmp_path, own_tag
):
    """Attack: backup.py and maintain.py --apply vacuum on a stack whose tag was built again
    while the old build served: the backup's start (``up``) recreated the stack on the new
    build, and the vacuum ran the new build's ``chroma vacuum``, which applies its migrations
    whatever the migration mode says (sysdb 9 -> 10, no rehearsal); with data the new build
    refused, the backup said "backup written" and exit 0 over a stack left down. Now both
    start again, and vacuum with, the build that serves (the upgrade is the deploy's), and a
    start that fails is the backup's exit 1. prove.py, whose `down` and `up` would start the
    new build, refuses before its `down`. One stack: the tag built again, then data behind
    the serving build itself (undone by hand), which no start can serve."""
    project_dir, name = project
    backups = tmp_path / "backups"
    data, port, expected = stack_on_tag(project, backups, own_tag)
    serving = served_image(name)
    new_id = rebuilt(own_tag)
    assert new_id != serving

    # prove.py's `down` and `up` would start the new build: refused before its `down`.
    proof = run_deploy(data, deploy_file="prove.py")
    said = [line for line in proof.output.splitlines() if "prove.py's `down` and `up`" in line]
    assert proof.returncode != 0 and len(said) == 1, proof.output
    assert f"runs an image that {own_tag} no longer names" in said[0]
    assert served_image(name) == serving and heartbeat(port)

    backed = run_deploy(data, deploy_file="backup.py")
    assert backed.returncode == 0, backed.output
    assert served_image(name) == serving  # started again as it was, not recreated
    assert heartbeat(port) and read_records(port) == expected

    since = sh("date +%s").stdout.strip()
    args = [sys.executable, str(ROOT / "maintain.py"), "@local", "--apply", "vacuum"]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vacuum: chroma.sqlite3" in done.stdout + done.stderr
    created = sh(f"docker events --since {since} --until $(date +%s) --filter event=create "
                 "--format '{{.From}}'").stdout.split()  # fmt: skip
    assert serving in created and own_tag not in created and new_id not in created, created
    assert served_image(name) == serving
    assert heartbeat(port) and read_records(port) == expected
    assert migrations_applied(project_dir) == 10

    migration_undone(project_dir)  # behind the serving build too: its own start refuses it
    backed = run_deploy(data, deploy_file="backup.py")
    assert backed.returncode != 0, backed.output
    assert "Chroma did not start again after the backup" in backed.output
    assert len(list(backups.glob(f"{name}-*.tar.gz"))) == 3  # backup, vacuum's, this: written


def test_a_refused_start_on_a_data_dir_emptied_beside_its_copy_does_not_hide_the_copy(project):
    """The data dir moved aside (chroma_data.before-restore-*, as a restore that did not finish
    leaves it) and an empty one made in its place, then the stack started by hand: the
    validating server refuses the empty dir and leaves a chroma.sqlite3 with no schema. The
    deploy must still refuse to start an empty server beside the copy (as it does without that
    start), not make a schema and serve an empty database."""
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    converge(data)
    write_records(port, per_collection=20)
    compose_down(project_dir)
    data_dir = project_dir / "chroma_data"
    aside = project_dir / "chroma_data.before-restore-20261207T000000Z-1"
    data_dir.rename(aside)
    data_dir.mkdir()
    os.chown(data_dir, aside.stat().st_uid, aside.stat().st_gid)
    sh(f"cd '{project_dir}' && docker compose up -d")  # refused: it restarts under its policy
    deadline = time.monotonic() + 30
    while not (data_dir / "chroma.sqlite3").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # what the refused start leaves
    sh(f"cd '{project_dir}' && docker compose stop")
    assert (data_dir / "chroma.sqlite3").exists()

    deployed = run_deploy(data)
    served = read_records(port) if heartbeat(port) else None
    drift = run_drift(data, "--no-color")
    assert deployed.returncode != 0, (served, deployed.output)
    assert "chroma_allow_empty_data_dir" in deployed.output, deployed.output
    assert drift.returncode != 0, drift.output
