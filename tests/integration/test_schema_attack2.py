"""Attacks on the schema guard (issue 26 §5), second round: each xfail(strict) test is a fault
found on the real 1.5.9 image and not fixed yet; its reason says what happens."""

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
from test_schema_attack import heartbeat, migration_undone, migrations_applied, rebuilt

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.xfail(
    strict=True,
    reason="attack: a stopped stack's chroma.sqlite3 truncated to 0 bytes beside its 2 segment "
    "dirs (40 records written): init-schema made a fresh schema ('Chroma's schema made in "
    ".../chroma_data by chromadb/chroma:1.5.9 (apply)', 1.0 s), the deploy exited 0 serving {} "
    "(0 collections), and drift said '1 host(s): 1 ok, 0 drifted, 0 error(s)'",
)
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


@pytest.fixture
def own_tag():
    """A release newer than any known: the test's own tag on the 1.5.9 build, removed after."""
    tag = "chromadb/chroma:1.99.7"
    subprocess.run(["docker", "tag", "chromadb/chroma:1.5.9", tag], check=True)
    yield tag
    subprocess.run(["docker", "image", "rm", tag], capture_output=True)


@pytest.mark.xfail(
    strict=True,
    reason="attack: the pre-upgrade archive of data one migration behind (sysdb 9, 40 records) "
    "under a tag built again (1.99.7) is labelled 1.5.9 (data_written_by: the oldest release "
    "that opens it); restore.py moves the live data aside, starts 1.5.9 validating on it: "
    "'MigrationError(UnappliedMigrationsFound)', 'container <project>-chroma-1 is unhealthy', "
    "'Error: executed 13 commands', exit 1, the stack restarting (4 restarts), no heartbeat",
)
def test_the_archive_an_upgrade_took_of_data_behind_its_image_restores(project, tmp_path, own_tag):
    """The way back from an upgrade: restore.py of the archive the upgrade took first. Data one
    migration behind its image (an older 1.x release's), the tag built again: the upgrade
    labels its archive with the oldest known release that opens the data, and the restore
    starts that release on it, validating its schema."""
    project_dir, name = project
    backups = tmp_path / "backups"
    data = base_data(project_dir, name, chroma_backup_dir=str(backups),
                     chroma_version=own_tag.rsplit(":", 1)[1])  # fmt: skip
    port = data["chroma_port"]
    converge(data)
    written = write_records(port, per_collection=20)
    expected = {key: sorted(ids) for key, ids in written.items()}
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


@pytest.mark.xfail(
    strict=True,
    reason="attack: the tag (1.99.7) built again while its old build serves data one migration "
    "behind (sysdb 9, 40 records): maintain.py --apply vacuum backs up, then runs the new "
    "build's `chroma vacuum` (it migrates whatever CHROMA_SQLITEDB__MIGRATION_MODE says: "
    "sysdb 9 -> 10), starts the new build and exits 0 ('vacuum: chroma.sqlite3 204800 -> "
    "196608 bytes ... downtime 6.6 s'); no rehearsal, no upgrade verification, and the deploy "
    "after it changes nothing",
)
def test_a_vacuum_does_not_apply_the_migrations_of_a_tag_built_again(project, tmp_path, own_tag):
    """maintain.py --apply vacuum on a stack whose tag was built again (a build with a migration
    the data lacks) while the old build serves: only the upgrade (backup, rehearsal,
    verification) may apply it, never the image's ``chroma vacuum`` in a one-off container."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"),
                     chroma_version=own_tag.rsplit(":", 1)[1])  # fmt: skip
    port = data["chroma_port"]
    converge(data)
    written = write_records(port, per_collection=20)
    expected = {key: sorted(ids) for key, ids in written.items()}
    migration_undone(project_dir)
    rebuilt(own_tag)
    args = [sys.executable, str(ROOT / "maintain.py"), "@local", "--apply", "vacuum"]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    level = migrations_applied(project_dir)
    assert heartbeat(port) and read_records(port) == expected
    assert level == 9, done.stdout + done.stderr


@pytest.mark.xfail(
    strict=True,
    reason="attack: the tag (1.99.7) built again while its old build serves data one migration "
    "behind (sysdb 9, 40 records): backup.py stops the stack, archives it, and starts it with "
    "`up`, which recreates it on the new build; that refuses the data "
    "(UnappliedMigrationsFound) and restarts (3 restarts, no heartbeat), while backup.py says "
    "'backup written: ...tar.gz' and exits 0",
)
def test_a_backup_under_a_tag_built_again_leaves_the_stack_serving(project, tmp_path, own_tag):
    """backup.py on a stack whose tag was built again (a build with a migration the data lacks)
    while the old build serves: the backup stops the stack and starts it again; it must serve
    again (or the backup say it does not), never be left refused behind an exit 0."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"),
                     chroma_version=own_tag.rsplit(":", 1)[1])  # fmt: skip
    port = data["chroma_port"]
    converge(data)
    written = write_records(port, per_collection=20)
    expected = {key: sorted(ids) for key, ids in written.items()}
    migration_undone(project_dir)
    rebuilt(own_tag)
    backed = run_deploy(data, deploy_file="backup.py")
    served = read_records(port) if heartbeat(port) else None
    assert served == expected, backed.output


@pytest.mark.xfail(
    strict=True,
    reason="attack: chroma_env CHROMA_SQLITEDB__HASH_TYPE=sha256 (accepted: a word 1.5.9 takes) "
    "on a serving stack of 40 records whose migrations were hashed md5: the deploy recreates "
    "it, 1.5.9 refuses in either mode ('MigrationError(MigrationValidationError("
    "InconsistentHash(...)))'), compose's 'container <project>-chroma-1 is unhealthy', exit 1 "
    "with no one-line refusal, the stack restarting (3 restarts, no heartbeat); drift says only "
    "'container_health healthy -> starting' and the heartbeat",
)
def test_a_hash_type_the_data_was_not_migrated_with_leaves_the_stack_serving(project):
    """chroma_env CHROMA_SQLITEDB__HASH_TYPE=sha256 (a word 1.5.9 takes) on a stack whose data
    recorded its migrations' md5 hashes (the default): the deploy must refuse before it
    recreates the server, or keep it serving, never leave it down."""
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    converge(data)
    written = write_records(port, per_collection=20)
    expected = {key: sorted(ids) for key, ids in written.items()}
    deployed = run_deploy(dict(data, chroma_env="CHROMA_SQLITEDB__HASH_TYPE=sha256"))
    served = read_records(port) if heartbeat(port) else None
    assert served == expected, deployed.output


@pytest.mark.xfail(
    strict=True,
    reason="attack: the data dir moved aside (chroma_data.before-restore-*, 40 records), an empty "
    "one made and the stack started by hand (refused: it leaves a schema-less chroma.sqlite3): "
    "the deploy that refused before that start ('chroma_allow_empty_data_dir: ... holds no "
    "Chroma data while chroma_data.before-restore-... exists beside it') now makes a schema "
    "(0.6 s), exits 0 serving {} (0 collections), and drift says '1 host(s): 1 ok'",
)
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
