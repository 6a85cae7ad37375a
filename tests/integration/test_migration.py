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
    # Verified before `up` published it (the stack was stopped for the copy).
    assert "Data taken over verified before the stack is published" in first.changed_operations
    assert read_records(port) == {k: sorted(v) for k, v in written.items()}
    record = json.loads((project_dir / ".chroma-deploy" / f"migrated-{volume}.json").read_text())
    assert {k: v["count"] for k, v in record["before"]["collections"].items()} == {
        "default_tenant/default_database/manuals": RECORDS,
        "default_tenant/default_database/tickets": RECORDS,
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
    # Refused before anything changes: the seed's stopped container still mounts the volume.
    assert f"the named volume {volume}" in result.output
    assert f"and in the data dir {project_dir}/chroma_data" in result.output
    assert "will not merge or choose" in result.output
    assert (project_dir / "chroma_data" / "chroma.sqlite3").read_text() == "the user's other data"


def test_failed_verification_stops_the_stack_keeps_everything_and_blocks_the_host(legacy):
    """A copy that does not match: stack stopped, copy aside, volume kept, deploys blocked."""
    project_dir, data, volume = legacy
    port = data["chroma_port"]
    written = write_records(port)
    converge(data)
    # As if a run had copied the volume and been cut off, with the volume holding
    # more than the copy: verification must fail and undo the move.
    pending = project_dir / ".chroma-deploy" / "migration-pending.json"
    pending.write_text(json.dumps({
        "kind": "volume", "subject": volume, "policies": {},
        "before": {"collections": {"default_tenant/default_database/manuals": {
            "count": RECORDS + 1, "ids_sha256": "0", "content_sha256": "0"}}},
    }))  # fmt: skip
    result = run_deploy(data)
    assert result.returncode != 0
    assert f"volume {volume} FAILED verification" in result.output
    assert "manuals: 601 records before, 600 now" in result.output
    assert len(list(project_dir.glob("chroma_data.failed-volume-*"))) == 1
    assert len(list((project_dir / ".chroma-deploy").glob("failed-volume-*.json"))) == 1
    assert sh(f"docker volume inspect {volume}").returncode == 0
    ours = f"label=com.docker.compose.project={data['chroma_compose_project']}"
    assert sh(f"docker ps -q --filter {ours}").stdout == ""  # nothing serves the empty dir

    # The next deploy must not serve the empty data dir: blocked until the user acts.
    blocked = run_deploy(data)
    assert blocked.returncode != 0
    assert "chroma_accept_failed_verification" in blocked.output
    assert not (project_dir / "chroma_data" / "chroma.sqlite3").exists()
    # Accepting the failure still leaves an empty dir beside the copy: a second key.
    accepted = dict(data, chroma_accept_failed_verification=True)
    still = run_deploy(accepted)
    assert still.returncode != 0 and "chroma_allow_empty_data_dir" in still.output
    # Both said: the volume (still ours, with its data) is migrated again, verified.
    again = dict(accepted, chroma_allow_empty_data_dir=True)
    converge(again)
    assert read_records(port) == {k: sorted(v) for k, v in written.items()}
