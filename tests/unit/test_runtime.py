"""Containers as they run against the rendered file, and what drift says of the project's
containers, images and records (issue #28), on recorded facts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from checks.compare import HostFacts, compare, foreign_containers, stack_problems
from checks.runtime import runtime_differences
from declaration.resources import Declared
from declaration.runtime import expected_runtime, memory_bytes, nano_cpus
from declaration.settings import load_settings
from declaration.versions import MIGRATION_MODE

FACTS = Path(__file__).resolve().parent.parent / "fixtures" / "facts"
ROOT = "/tmp/fx/stack"


def recorded(name: str, case: str):
    return json.loads((FACTS / name / f"{case}.json").read_text())["fact"]


def declared_for(**data: object) -> Declared:
    keys = {"chroma_project_dir": ROOT, "chroma_compose_project": "fx", "chroma_port": 18777}
    return Declared(load_settings({**keys, **data}), 0, 0, "t" * 32 if data else None)


@pytest.fixture
def running() -> dict:
    """The recorded chroma container of a converged stack, hardened and validating its
    schema (declaration/render.py) as deployed now."""
    container = recorded("compose.ComposeStack", "running")["containers"][0]
    container.update(cap_drop=["ALL"], security_opt=["no-new-privileges:true"])
    container["env"][MIGRATION_MODE] = "validate"
    return container


def test_sizes_and_cpus_as_the_engine_keeps_them():
    assert memory_bytes("2g") == 2 * 1024**3
    assert memory_bytes("512m") == 512 * 1024**2
    assert memory_bytes("1073741824") == 1073741824
    assert memory_bytes(None) == 0
    assert nano_cpus("1.5") == 1_500_000_000
    assert nano_cpus(None) == 0


def test_the_recorded_container_runs_as_the_file_declares(running):
    declared = declared_for()
    expected = expected_runtime(declared.compose_content, ROOT)["chroma"]
    assert runtime_differences(running, expected) == []


def test_each_way_a_container_can_run_otherwise_is_found(running):
    declared = declared_for(chroma_mem_limit="1g", chroma_cpus="1.5")
    expected = expected_runtime(declared.compose_content, ROOT)["chroma"]
    assert (expected["memory"], expected["nano_cpus"]) == (1024**3, 1_500_000_000)
    changed = copy.deepcopy(running)
    changed.update(
        healthcheck=["NONE"], restart_policy="no", memory=8 * 1024**3, nano_cpus=2 * 10**9,
        user="1000:1000", limits={"pids_limit": 4}, cap_add=["NET_ADMIN"], networks=[],
        env={**running["env"], "CHROMA_PERSIST_PATH": "/elsewhere"},
        mounts=[{"type": "bind", "source": "/srv/other", "target": "/data", "name": None}],
    )  # fmt: skip
    found = [what for what, _, _ in runtime_differences(changed, expected)]
    assert found == [
        "environment CHROMA_PERSIST_PATH", "healthcheck", "restart policy", "memory",
        "nano cpus", "user", "pids limit", "cap_add", "networks", "bind mounts",
    ]  # fmt: skip
    # The deploy sees it too, so it recreates instead of saying "No change".
    hashes = {"chroma": running["config_hash"]}
    stack = {"docker": True, "config_error": None, "image_id": None,
             "declared_hashes": hashes, "containers": [changed]}  # fmt: skip
    assert stack_problems(stack, None, expected_runtime(declared.compose_content, ROOT))
    assert not stack_problems({**stack, "containers": [running]}, None, None)


def test_with_the_proxy_chroma_is_on_the_internal_network_only():
    runtime = expected_runtime(declared_for(chroma_auth_proxy="true").compose_content, ROOT)
    assert runtime["chroma"]["networks"] == ["fx_internal"]
    assert runtime["auth-proxy"]["networks"] == ["fx_default", "fx_internal"]
    assert runtime["auth-proxy"]["tmpfs"] == ["/run"]
    # compose reads `$$` as `$`: the engine keeps the healthcheck with one.
    assert "$$" not in " ".join(runtime["auth-proxy"]["healthcheck"])


def _facts(running: dict, **changes: object) -> HostFacts:
    declared = declared_for()
    stack = recorded("compose.ComposeStack", "running")
    stack["containers"] = [running]
    running["config_hash"] = stack["declared_hashes"]["chroma"]
    files = recorded("project.ProjectFiles", "present")
    files["compose"] = {"sha256": "", "content": declared.compose_content}
    files["gitignore"] = declared.gitignore_lines
    dirs = {}
    for resource in declared.paths:
        dirs[resource.path] = {"type": "directory", "uid": 0, "gid": 0, "user": "root",
                               "group": "root", "mode": resource.mode, "has_sqlite": True,
                               "gitkeep": {"uid": 0}, "sha256": None, "acl": False,
                               "foreign": None, "gitkeep_kind": None, "setfacl": False}  # fmt: skip
    facts = HostFacts(
        data_dirs=dirs, project_files=files, stack=stack,
        health=recorded("chroma.ChromaHealth", "healthy"), legacy_volumes=[],
        safety={"records": [], "aside": [], "data_has_sqlite": True, "data_segment_dirs": []},
    )  # fmt: skip
    return HostFacts(**{**facts.__dict__, **changes})


def kinds(facts: HostFacts) -> list[str]:
    return [item.kind for item in compare(declared_for(), facts)]


def test_a_converged_host_has_no_drift(running):
    assert kinds(_facts(running)) == []


def test_containers_the_deploy_did_not_make_are_drift(running):
    facts = _facts(running)
    oneoff = {**copy.deepcopy(running), "name": "fx-chroma-run-1", "oneoff": True, "ports": []}
    sidecar = {**copy.deepcopy(running), "name": "x", "service": "sidecar", "config_files": None}
    ours = {**copy.deepcopy(running), "name": "fx-app-1", "service": "app"}  # our orphan
    facts.stack["containers"] += [oneoff, sidecar, ours]
    # The one-off is not a second chroma container: no port or state drift of its own.
    assert kinds(facts) == ["foreign_container", "foreign_container"]
    assert [
        name
        for name, _ in foreign_containers(facts.stack, ["chroma"], f"{ROOT}/docker-compose.yml")
    ] == [
        "fx-chroma-run-1",
        "x",
    ]


def test_a_name_taken_an_image_missing_or_of_another_version_and_a_failed_record(running):
    facts = _facts(running)
    facts.stack["containers"] = []
    assert "container_name_taken" not in kinds(facts)
    taken = _facts(running, named_containers={"fx-chroma-1": None})
    taken.stack["containers"] = []
    assert kinds(taken)[:2] == ["container_name_taken", "container_missing"]
    facts = _facts(running)
    facts.stack["image_id"] = None
    assert "image_missing" in kinds(facts)
    facts = _facts(running)
    facts.stack.update(image_id="sha256:" + "2" * 64, image_entrypoint=[])
    assert "image_other_version" in kinds(facts)
    facts.stack["image_entrypoint"] = running["entrypoint"]  # the same server, rebuilt
    assert "image_tag_moved" in kinds(facts)
    facts = _facts(running)
    facts.safety["records"] = ["failed-migration-x.json"]
    assert kinds(facts) == ["failed_verification"]


def test_segment_dirs_without_the_database_that_names_them_are_drift_unless_allowed(running):
    """What the deploy refuses (checks/empty_data.py), drift says: segment dirs beside no
    chroma.sqlite3, a schema-less one, or one that names none of them (a new server's file
    put back, another stack's; a reading without the counts: one that names no
    collection); not beside one that names them."""
    segments = ["5d0c8b2e-6f1a-4f0e-9a51-2b7c5e1d9f20"]
    levels = {"embeddings_queue": 2, "metadb": 6, "sysdb": 10}
    named = {"levels": levels, "error": None, "collections": 2}
    fresh = {"levels": levels, "error": None, "collections": 0}
    schema_less = {"levels": None, "error": "OperationalError: no such table: migrations",
                   "collections": None}  # fmt: skip
    counted = {"segment_dirs": 1, "segment_dirs_named": 0}
    other = {"levels": levels, "error": None, "collections": 3, **counted}  # another stack's
    ours = {**other, "segment_dirs_named": 1}
    for has_sqlite, schema, expected in [
        (True, named, []),
        (True, ours, []),
        (True, other, ["database_lost"]),
        (True, fresh, []),  # a new server's, or every collection deleted: not told apart
        (True, schema_less, ["database_lost"]),
        (False, {"levels": None, "error": None, "collections": None}, ["database_lost"]),
    ]:
        facts = _facts(running, data_schema=schema)
        facts.safety.update(data_has_sqlite=has_sqlite, data_segment_dirs=segments)
        assert kinds(facts) == expected, schema
    cut = {"levels": None, "error": "DatabaseError: database disk image is malformed",
           "collections": None}  # fmt: skip
    assert kinds(_facts(running, data_schema=cut)) == ["database_lost"]  # dirs or none
    locked = {**cut, "error": "OperationalError: database is locked"}
    assert kinds(_facts(running, data_schema=locked)) == []  # not read, not damaged
    facts = _facts(running, data_schema=other)
    facts.safety["data_segment_dirs"] = segments
    allowed = declared_for(chroma_allow_empty_data_dir="true")
    assert [item.kind for item in compare(allowed, facts)] == []
    facts.safety["data_segment_dirs"] = []
    assert kinds(facts) == []  # a new stack's database, no segment dir yet


def test_a_data_dir_replaced_under_the_running_server_is_drift(running):
    """The data dir moved away while Chroma ran and another put at its path: the mount's
    source path names the new dir (DataHomes), the server still has the old one open
    (OpenedDataDir), whatever the declared data dir or version say now."""
    homes = recorded("datahomes.DataHomes", "a_shared_data_dir")
    homes["mounts"] = [m for m in homes["mounts"] if m["name"] == "rec-ours"]
    homes["mounts"][0].update(name="fx-chroma-1", project="fx", source=f"{ROOT}/chroma_data")
    here = homes["mounts"][0]["inode"]
    same = _facts(running, data_homes=homes, opened={"inodes": {"/data": here}})
    assert kinds(same) == []
    other = _facts(running, data_homes=homes, opened={"inodes": {"/data": "1:2"}})
    assert kinds(other) == ["data_dir_moved"]
    assert kinds(_facts(running, data_homes=homes, opened={"inodes": {}})) == []  # stopped
    # A key changed since (another data dir declared): the mount's own source is compared.
    homes["mounts"][0]["source"] = "/srv/old/chroma_data"
    moved = [i for i in compare(declared_for(), other) if i.kind == "data_dir_moved"]
    assert [i.resource for i in moved] == ["/srv/old/chroma_data"]


def test_a_second_container_of_a_declared_service_is_drift_and_the_deploy_acts(running):
    """`docker compose up --scale chroma=2`: a second server on the same data dir."""
    facts = _facts(running)
    second = {**copy.deepcopy(running), "name": "fx-chroma-2"}
    facts.stack["containers"] = [second, running]
    assert kinds(facts) == ["container_extra"]
    assert stack_problems(facts.stack) == [
        "fx-chroma-2: more containers of its service than the file declares"
    ]
