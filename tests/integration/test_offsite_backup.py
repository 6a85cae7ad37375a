"""backup.py with chroma_backup_repository: a restic snapshot of a real Chroma 1.5.9 stack.

The program itself, its faults and retention are tested on real restic with a
stand-in docker (tests/unit/test_offsite_backup.py); here it runs as a user
runs it, through pyinfra, on a served stack, and the snapshot is read back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import base_data, converge, read_records, run_deploy, write_records
from harness.offsite_config import init_repository, restic_on, write_offsite

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FILES = Path(__file__).resolve().parent.parent.parent / "files"


def test_backup_py_writes_a_snapshot_whose_manifest_and_data_match_the_served_records(
    project, tmp_path: Path
):
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    converge(data)
    write_records(port, ("books", "papers"), per_collection=50)
    before = read_records(port)
    assert sum(map(len, before.values())) == 100

    repository = tmp_path / "repository"
    password = tmp_path / "restic-password"  # on the control machine, as the key names it
    password.write_text("a long repository password\n")
    init_repository(repository, "a long repository password")
    config = write_offsite(project_dir, project_name=name, host="@local",
                           repository=str(repository), password="a long repository password",
                           metrics_file=tmp_path / "metrics" / f"{name}-backup.prom")  # fmt: skip
    offsite = {"chroma_backup_repository": str(repository),
               "chroma_backup_password_file": str(password)}  # fmt: skip
    done = run_deploy({**data, **offsite}, deploy_file="backup.py", timeout=600)
    assert done.returncode == 0, done.output
    [snapshot] = json.loads(restic_on(config, "snapshots", "--json").stdout)
    assert f"@local: snapshot {snapshot['short_id']} of {name} written: 100 records" in done.output
    assert sorted(snapshot["tags"]) == ["chroma_version=1.5.9", "host=@local", f"project={name}",
                                        "records=100"]  # fmt: skip

    # Chroma serves the same records, and the stack is still the one declared.
    assert read_records(port) == before
    again = run_deploy(data)
    assert again.returncode == 0, again.output
    assert again.changed_operations == [], again.output

    # The snapshot's manifest equals what the server answers now (counts, ids, content).
    staging = json.loads(config.read_text())["staging_dir"]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(restic_on(config, "dump", "latest", f"{staging}/manifest.json").stdout)
    counts = {key.rsplit("/", 1)[1]: item["count"]
              for key, item in json.loads(manifest.read_text())["collections"].items()}  # fmt: skip
    assert counts == {collection: len(ids) for collection, ids in before.items()}
    compared = subprocess.run(
        [sys.executable, str(FILES / "chroma_safety.py"), "compare", "--manifest", str(manifest),
         "--url", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    # And the data in the snapshot is what the manifest says.
    restored = tmp_path / "restored"
    assert restic_on(config, "restore", "latest", "--target", str(restored)).returncode == 0
    read_back = subprocess.run(
        [sys.executable, str(FILES / "chroma_inventory.py"),
         f"sqlite:{restored}{staging}/data/chroma.sqlite3"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(read_back.stdout)["collections"] == json.loads(manifest.read_text())[
        "collections"]  # fmt: skip
    status = json.loads((project_dir / ".chroma-deploy" / "offsite-status.json").read_text())
    assert 0 < status["last_downtime_seconds"] < status["last_duration_seconds"]
