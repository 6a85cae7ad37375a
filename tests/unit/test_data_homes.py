"""The rules over where data lives and which release wrote it (facts.datahomes,
declaration.versions), on the recorded reading of a real host and the real levels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from declaration.versions import SCHEMA_LEVELS, data_written_by, migrates, too_new_for
from facts.datahomes import data_elsewhere, other_server_refusal, other_servers

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "facts" / "datahomes.DataHomes"
L06, L15 = SCHEMA_LEVELS["0.6.3"], SCHEMA_LEVELS["1.5.9"]


def shared() -> dict:
    """A real host: rec-ours (project recp's chroma, running) and rec-other (no project,
    created, restart=always) both mount /tmp/rec/data, which holds chroma.sqlite3."""
    return json.loads((FIXTURES / "a_shared_data_dir.json").read_text())["fact"]


def test_a_stopped_container_that_restarts_with_the_engine_is_another_server():
    found = other_servers(shared(), "recp")
    assert [m["name"] for m in found] == ["rec-other"]
    line = other_server_refusal(found[0], "/tmp/rec/data", "/srv/kb")
    assert line.startswith("chroma_data_dir: /tmp/rec/data is served by another Chroma already")
    assert "docker update --restart=no rec-other && docker stop rec-other" in line


def test_the_same_project_renamed_names_the_compose_project_key():
    homes = shared()
    # Seen from a deploy of the same project dir under another compose project name.
    found = other_servers(homes, "renamed")
    assert {m["name"] for m in found} == {"rec-ours", "rec-other"}
    ours = next(m for m in found if m["name"] == "rec-ours")
    line = other_server_refusal(ours, "/tmp/rec/data", "/tmp/rec")
    assert line.startswith("chroma_compose_project: ")
    assert "docker stop rec-ours" in line and "down" not in line


def test_a_stopped_container_without_restart_always_is_not_a_server():
    homes = shared()
    for mount in homes["mounts"]:
        mount["restart"] = "unless-stopped"
    assert other_servers(homes, "recp") == []


def test_data_served_from_elsewhere_is_found_by_inode_not_by_path():
    homes = shared()
    homes["data_dir"] = {"inode": "1:1", "has_sqlite": False}  # another, empty dir declared
    found = data_elsewhere(homes, "recp", "/data")
    assert [(m["source"], m["containers"]) for m in found] == [("/tmp/rec/data", ["rec-ours"])]
    homes["data_dir"]["inode"] = homes["mounts"][0]["inode"]  # the same dir, another path
    assert data_elsewhere(homes, "recp", "/data") == []


def test_a_mount_at_another_target_or_a_one_off_run_is_not_the_project_s_data():
    homes = shared()
    homes["data_dir"] = {"inode": "1:1", "has_sqlite": False}
    for mount in homes["mounts"]:
        mount["target"] = "/app/chroma_db"  # the fallback client's dir of the app service
    assert data_elsewhere(homes, "recp", "/data") == []
    homes = shared()
    homes["data_dir"] = {"inode": "1:1", "has_sqlite": False}
    for mount in homes["mounts"]:
        mount["oneoff"] = True
    assert data_elsewhere(homes, "recp", "/data") == []


@pytest.mark.parametrize(
    ("version", "levels", "too_new", "migrating"),
    [
        ("0.6.3", L15, True, None),  # 1.5.9's data on 0.6.3: refused
        ("0.5.23", L15, True, None),
        ("0.6.3", L06, False, False),  # its own data: opened as it is
        ("1.5.9", L06, False, True),  # the upgrade path
        ("1.5.9", L15, False, False),
        ("1.6.0", L06, False, True),  # unknown, after a known one that migrates
        ("1.6.0", L15, False, None),  # unknown: the upgrade path, never a direct open
        ("1.0.0", L15, None, None),  # between two known levels: nobody can tell
    ],
)
def test_which_release_can_open_which_data(version, levels, too_new, migrating):
    assert too_new_for(version, levels) is too_new
    assert migrates(version, levels) is migrating


def test_an_archive_is_labelled_with_a_release_that_opens_its_data():
    assert data_written_by(L06) == "0.6.3"
    assert data_written_by(L15) == "1.5.9"
    assert data_written_by({**L06, "sysdb": 8}) == "0.6.3"  # older: the oldest that opens it
    assert data_written_by({**L15, "sysdb": 11}) is None  # newer than every known release


def test_a_parent_mounted_with_the_persist_path_below_it_serves_the_data_dir():
    """rec-parent mounts /tmp/rec at /srv with CHROMA_PERSIST_PATH=/srv/data: it serves
    /tmp/rec/data though no mount's source is that dir."""
    homes = shared()
    parent = next(m for m in homes["mounts"] if m["name"] == "rec-parent")
    assert parent["served"] == "/tmp/rec/data"
    assert parent["served_inode"] == homes["data_dir"]["inode"]
    assert "rec-parent" not in [m["name"] for m in other_servers(homes, "recp")]  # created
    parent["state"] = "running"
    assert "rec-parent" in [m["name"] for m in other_servers(homes, "recp")]


def test_data_a_container_persists_below_a_mount_is_found_there():
    homes = shared()
    homes["data_dir"] = {"inode": "1:1", "has_sqlite": False, "entries": 0}
    parent = next(m for m in homes["mounts"] if m["name"] == "rec-parent")
    parent["project"], parent["service"] = "recp", "chroma"
    found = data_elsewhere(homes, "recp", "/data")
    assert {(m["source"], tuple(sorted(m["containers"]))) for m in found} == {
        ("/tmp/rec/data", ("rec-ours", "rec-parent"))
    }


def test_a_read_only_mount_of_the_data_dir_is_no_second_server():
    """rec-sidecar (restart=always) mounts the data dir read-only, as a backup sidecar would."""
    homes = shared()
    sidecar = next(m for m in homes["mounts"] if m["name"] == "rec-sidecar")
    assert sidecar["rw"] is False and sidecar["inode"] == homes["data_dir"]["inode"]
    assert "rec-sidecar" not in [m["name"] for m in other_servers(homes, "recp")]
