"""Data stuck in a named volume (the seed's BEFORE state) moves to the bind mount, verified."""

from __future__ import annotations

import json
import time

import pytest
from conftest import RECORDS, converge, read_records, run_deploy, sh, write_records

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_named_volume_data_is_migrated_verified_and_the_volume_kept(legacy):
    project_dir, data, volume = legacy
    port = data["chroma_port"]
    written = write_records(port)
    started = time.perf_counter()
    first = converge(data)  # migrates, then a second run changes nothing
    elapsed = time.perf_counter() - started
    assert "Data from a legacy named volume (copied, never deleted)" in first.changed_operations
    assert "Migrated data verified on the bind mount" in first.changed_operations
    assert read_records(port) == {k: sorted(v) for k, v in written.items()}
    record = json.loads((project_dir / ".chroma-deploy" / f"migrated-{volume}.json").read_text())
    assert {k: v["count"] for k, v in record["before"]["collections"].items()} == {
        "manuals": RECORDS, "tickets": RECORDS,
    }  # fmt: skip
    assert sh(f"docker volume inspect {volume}").returncode == 0  # never deleted
    assert (project_dir / "chroma_data" / "chroma.sqlite3").is_file()
    print(f"migrated {2 * RECORDS} records in {elapsed:.1f} s (two deploy runs)")


def test_volume_and_data_dir_both_holding_data_is_refused(legacy):
    project_dir, data, volume = legacy
    port = data["chroma_port"]
    write_records(port)
    sh(f"cd '{project_dir.parent / 'legacy'}' && docker compose stop")
    project_dir.mkdir()
    (project_dir / "chroma_data").mkdir()
    (project_dir / "chroma_data" / "chroma.sqlite3").write_text("the user's other data")
    result = run_deploy(data)
    assert result.returncode != 0
    assert f"both the named volume {volume} and {project_dir}/chroma_data hold" in result.output
    assert (project_dir / "chroma_data" / "chroma.sqlite3").read_text() == "the user's other data"


def test_failed_verification_puts_the_stack_back_on_the_volume(legacy):
    project_dir, data, volume = legacy
    port = data["chroma_port"]
    write_records(port)
    converge(data)
    # As if a run had copied the volume and been cut off, with the volume holding
    # more than the copy: verification must fail and undo the move.
    legacy = sh(f"docker ps -aq --filter volume={volume}").stdout.split()
    pending = project_dir / ".chroma-deploy" / "migration-pending.json"
    pending.write_text(json.dumps({
        "volume": volume, "stopped": " ".join(legacy),
        "before": {"collections": {"manuals": {"count": RECORDS + 1, "ids_sha256": "0"}}},
    }))  # fmt: skip
    sh(f"cd '{project_dir}' && docker compose stop")  # ours down, so the port is free
    result = run_deploy(data)
    assert result.returncode != 0
    assert f"migration of named volume {volume} FAILED verification" in result.output
    assert len(list(project_dir.glob("chroma_data.failed-migration-*"))) == 1
    running = sh(f"docker ps -q --filter volume={volume}").stdout.split()
    assert running == [c[:12] for c in legacy] or running == legacy
    assert sh(f"docker volume inspect {volume}").returncode == 0
