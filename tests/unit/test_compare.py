"""checks.compare on recorded facts: each kind of drift, and a clean host."""

from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from checks import compare as compare_module
from checks.compare import HostFacts, compare
from declaration.resources import Declared
from declaration.settings import load_settings
from declaration.versions import MIGRATION_MODE

FACTS = Path(__file__).resolve().parent.parent / "fixtures" / "facts"
ROOT = "/tmp/fx/stack"


def recorded(name: str, case: str):
    return json.loads((FACTS / name / f"{case}.json").read_text())["fact"]


@pytest.fixture
def declared() -> Declared:
    settings = load_settings(
        {"chroma_project_dir": ROOT, "chroma_compose_project": "fx", "chroma_port": 18777}
    )
    return Declared(settings, 0, 0)


@pytest.fixture
def converged(declared: Declared) -> HostFacts:
    """The recorded facts of a converged host, the compose file as now rendered."""
    dirs = recorded("datadirs.DataDirs", "converged_and_missing")
    data_dir = dirs[f"{ROOT}/chroma_data"]
    data_dirs = {ROOT: dirs[ROOT]}
    for name in ("chroma_data", "chroma_db", "logs"):
        data_dirs[f"{ROOT}/{name}"] = dict(
            copy.deepcopy(data_dir), has_sqlite=name == "chroma_data"
        )
        data_dirs[f"{ROOT}/{name}"]["gitkeep"] = {"uid": 0, "gid": 0, "mode": "644", "size": 0}
    files = recorded("project.ProjectFiles", "present")
    files["compose"] = {"sha256": "", "content": declared.compose_content}
    files["gitignore"] = ["# mine", *declared.gitignore_lines]
    stack = recorded("compose.ComposeStack", "running")
    for container in stack["containers"]:  # recorded before the hardening: as deployed now
        container.update(cap_drop=["ALL"], security_opt=["no-new-privileges:true"])
        # And before the schema guard: the server validates its schema (declaration/render.py).
        container["env"][MIGRATION_MODE] = "validate"
    return HostFacts(
        data_dirs=data_dirs,
        project_files=files,
        stack=stack,
        health=recorded("chroma.ChromaHealth", "healthy"),
        legacy_volumes=[],
    )


def kinds(declared, facts) -> list[str]:
    return [item.kind for item in compare(declared, facts)]


def test_converged_host_has_no_drift(declared, converged):
    stack = converged.stack
    # The recorded container predates the current template: give it the file's hash.
    stack["containers"][0]["config_hash"] = stack["declared_hashes"]["chroma"]
    assert compare(declared, converged) == []


def test_a_container_that_lost_its_hardening_is_drift(declared, converged):
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    converged.stack["containers"][0].update(cap_drop=[], security_opt=[])
    items = [(i.kind, i.actual) for i in compare(declared, converged)]
    assert items == [
        ("hardening", "capabilities not dropped (cap_drop ALL)"),
        ("hardening", "no-new-privileges not set"),
    ]


def test_each_path_difference_is_one_item(declared, converged):
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    converged.data_dirs[f"{ROOT}/chroma_data"].update(mode="755", uid=4242, user=None)
    converged.data_dirs[f"{ROOT}/logs"]["gitkeep"] = None
    converged.data_dirs[f"{ROOT}/chroma_db"] = None
    items = {(i.kind, i.resource): (i.expected, i.actual) for i in compare(declared, converged)}
    assert items == {
        ("mode", f"{ROOT}/chroma_data"): ("750", "755"),
        ("owner", f"{ROOT}/chroma_data"): ("0", "4242"),
        ("missing", f"{ROOT}/logs/.gitkeep"): ("file", "missing"),
        ("missing", f"{ROOT}/chroma_db"): ("directory", "missing"),
    }


def test_edited_compose_file_has_a_diff_and_hides_the_config_hash_item(declared, converged):
    converged.project_files["compose"]["content"] = declared.compose_content.replace(
        "retries: 20", "retries: 2"
    )
    items = compare(declared, converged)
    assert [i.kind for i in items] == ["compose_file"]
    assert "-      retries: 20\n+      retries: 2\n" in (items[0].diff or "")


def test_a_start_the_schema_guard_refused_is_one_item_that_says_what_to_do(declared, converged):
    """Instead of "restarting": the image refused data it would migrate, and the way out."""
    container = converged.stack["containers"][0]
    container.update(state="restarting", health=None, ports=[],
                     config_hash=converged.stack["declared_hashes"]["chroma"])  # fmt: skip
    assert [i.kind for i in compare(declared, converged)] == ["container_state", "port"]
    refusal = {"refused": True, "said": "MigrationError(UnappliedMigrationsFound)"}
    items = compare(declared, replace(converged, schema_refusal=refusal))
    assert [(i.kind, i.resource) for i in items] == [
        ("schema_refused", "fx-chroma-1"), ("port", "fx-chroma-1"),
    ]  # fmt: skip
    assert items[0].actual.startswith("chromadb/chroma:1.5.9 refused to start: the data's schema")
    assert items[0].actual.endswith(
        "run the deploy with chroma_version=1.5.9 so chroma-deploy backs up, rehearses and "
        "applies them"
    )
    container["image"] = "chromadb/chroma:1.6.0"  # set by hand: the way out names it
    items = compare(declared, replace(converged, schema_refusal=refusal))
    assert "chroma_version=1.6.0 so" in items[0].actual
    # Pinned by tag and digest (attack: the advice named the digest's hex as the version).
    container["image"] = "chromadb/chroma:1.6.0@sha256:" + "3f" * 32
    items = compare(declared, replace(converged, schema_refusal=refusal))
    assert "chroma_version=1.6.0 so" in items[0].actual


def test_container_problems(declared, converged):
    container = converged.stack["containers"][0]
    container.update(state="exited", image="chromadb/chroma:1.0.0", config_hash="0" * 64)
    container["ports"][0]["host_ip"] = "0.0.0.0"
    converged.health.update(status=None, heartbeat=None, error="connection refused")
    assert kinds(declared, converged) == [
        "container_state", "container_config", "port", "image", "heartbeat",
    ]  # fmt: skip


def test_tag_moved_and_named_volume(declared, converged):
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    converged.stack["image_id"] = "sha256:" + "1" * 64
    converged.stack["containers"][0]["mounts"] = [
        {
            "type": "volume",
            "source": "/var/lib/docker/volumes/v/_data",
            "target": "/data",
            "name": "fx_chroma_data",
        }
    ]
    # The bind mount the file declares is gone from the container as it runs, too.
    assert kinds(declared, converged) == ["container_runtime", "image_tag_moved", "mount"]


def test_legacy_volume_of_another_project_is_not_this_hosts_drift(declared, converged):
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    legacy = recorded("volumes.LegacyVolumes", "one_with_data")
    facts = HostFacts(**{**converged.__dict__, "legacy_volumes": legacy})
    assert kinds(declared, facts) == []
    facts.data_dirs[f"{ROOT}/chroma_data"]["has_sqlite"] = False
    # (The data dir lost its data under a running Chroma: drift of its own, data_dir_moved.)
    facts.stack["containers"][0]["mounts"] = []  # (its binds differ from the file's too)
    # fxlegacy belongs to no compose project: not this project's, so not its drift...
    assert kinds(declared, facts) == ["container_runtime", "mount"]
    # ...until chroma_adopt_volume names it (otherproj_fxlegacy holds no sqlite).
    adopting = Declared(
        load_settings(
            {"chroma_project_dir": ROOT, "chroma_compose_project": "fx", "chroma_port": 18777,
             "chroma_adopt_volume": "fxlegacy"}
        ),
        0, 0,
    )  # fmt: skip
    assert kinds(adopting, facts) == ["container_runtime", "mount", "legacy_volume"]


def test_this_projects_volume_with_data_beside_a_data_dir_with_data_is_drift(declared, converged):
    """The deploy refuses to choose between the two: drift must not call that host ok."""
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    legacy = recorded("volumes.LegacyVolumes", "one_with_data")
    legacy[0]["compose_project"] = "fx"  # this compose project's own volume
    facts = HostFacts(**{**converged.__dict__, "legacy_volumes": legacy})
    assert facts.data_dirs[f"{ROOT}/chroma_data"]["has_sqlite"]
    (item,) = compare(declared, facts)
    assert item.kind == "legacy_volume" and "the deploy refuses to choose" in item.actual
    # Once migrated here (its migrated-<volume>.json record), the copy is the data dir.
    migrated = HostFacts(**{**facts.__dict__, "migrated_volumes": frozenset({legacy[0]["name"]})})
    assert kinds(declared, migrated) == []


def test_data_in_a_containers_own_layer_is_its_own_kind(declared, converged):
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    layer = recorded("compose.ContainerLayerData", "seed_after_on_1x")
    facts = HostFacts(**{**converged.__dict__, "layer_data": layer})
    assert kinds(declared, facts) == ["data_outside_mount"]
    (item,) = compare(declared, facts)
    assert item.resource == "container fxseed-chroma-1"
    assert "/data/chroma.sqlite3" in item.actual


def _gitignore_items(declared, facts) -> list[tuple[str, str]]:
    converged_hash = facts.stack["declared_hashes"]["chroma"]
    facts.stack["containers"][0]["config_hash"] = converged_hash
    return [(i.expected, i.actual) for i in compare(declared, facts) if i.kind == "gitignore"]


def test_a_gitignore_line_removed_is_absent(declared, converged):
    converged.project_files["gitignore"].remove("logs/*")
    assert _gitignore_items(declared, converged) == [("logs/*", "absent")]


def test_a_gitignore_ignore_line_after_its_negation_is_out_of_order(declared, converged):
    """What git reads: the last match wins, so logs/* after !logs/.gitkeep ignores .gitkeep."""
    lines = converged.project_files["gitignore"]
    lines.remove("logs/*")
    lines.append("logs/*")
    assert _gitignore_items(declared, converged) == [
        ("logs/* before !logs/.gitkeep", "logs/* after !logs/.gitkeep")
    ]
    lines.append("!logs/.gitkeep")  # a later negation wins again: in order
    assert _gitignore_items(declared, converged) == []


def test_gitignore_lines_elsewhere_but_in_order_are_no_drift(declared, converged):
    lines = converged.project_files["gitignore"]
    lines.remove("chroma_data/*")
    lines.insert(0, "chroma_data/*")  # the user's own, above our block
    lines.remove(declared.gitignore_lines[0])
    lines.append(declared.gitignore_lines[0])  # the header moved: order of no consequence
    assert _gitignore_items(declared, converged) == []


def test_the_kinds_compare_reports_are_the_published_schemas():
    """Read from the source: every DriftItem kind is in schemas/drift.schema.json, and back.

    The schema is the one list users (and drift's Prometheus metrics) see; a kind
    added here but not there, or left there after it went, fails.
    """
    source = Path(compare_module.__file__).read_text()
    reported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DriftItem":
            kind = node.args[0]
            assert isinstance(kind, ast.Constant), f"line {node.lineno}: a kind is a literal"
            reported.add(kind.value)
    schema = Path(__file__).resolve().parents[2] / "schemas" / "drift.schema.json"
    published = json.loads(schema.read_text())["$defs"]["item"]["properties"]["kind"]["enum"]
    assert reported == set(published)


def test_every_published_kind_is_in_the_docs_table_and_back():
    """docs/drift.md's kinds table names each kind of schemas/drift.schema.json, no other."""
    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "schemas" / "drift.schema.json").read_text())
    published = set(schema["$defs"]["item"]["properties"]["kind"]["enum"])
    lines = (root / "docs" / "drift.md").read_text().splitlines()
    start = lines.index("| kind | what differs | repaired by deploy.py |")
    documented = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert sorted(published - documented) == [], "kinds missing from docs/drift.md"
    assert sorted(documented - published) == [], "kinds in docs/drift.md but not published"


def test_a_running_container_without_a_healthcheck_is_no_drift(declared, converged):
    """As the deploy sees it: an application image without HEALTHCHECK is running, no more."""
    container = converged.stack["containers"][0]
    container["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    container["health"] = None
    assert kinds(declared, converged) == []
    container["health"] = "unhealthy"
    assert kinds(declared, converged) == ["container_health"]


def _items(declared, facts) -> list[tuple[str, str, str]]:
    return [
        (i.kind, i.resource.removeprefix(f"{ROOT}/"), i.actual) for i in compare(declared, facts)
    ]


def test_setgid_an_acl_a_gitkeep_dir_and_foreign_owners_inside_the_data_dirs(declared, converged):
    """Recorded on a host: what the server could not write, and what chmod 750 would not clear."""
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    assert kinds(declared, converged) == []
    tampered = recorded("datadirs.DataDirs", "gitkeep_dir_acl_and_foreign_owners")
    for path, found in tampered.items():
        converged.data_dirs[path.replace("/tmp/fx/stack", ROOT)] = found
    assert _items(declared, converged) == [
        ("missing", "chroma_data/.gitkeep", "directory"),
        ("owner", "chroma_data/chroma.sqlite3", "4242:4343 644"),
        ("mode", "chroma_db", "2750"),
        ("missing", "chroma_db/.gitkeep", "missing"),
        ("acl", "chroma_db", "an ACL (ls -l shows +)"),
        ("owner", "logs/app.log", "0:0 444"),
    ]


def test_project_files_of_another_kind_and_what_compose_reads_beside_ours(declared, converged):
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    files = recorded("project.ProjectFiles", "compose_inputs_and_a_dir")
    files["compose"] = {"sha256": "", "content": declared.compose_content}
    converged.project_files.update(files=files["files"], env_compose=files["env_compose"])
    assert _items(declared, converged) == [
        ("missing", ".gitignore", "directory"),
        ("mode", "docker-compose.yml", "666"),
        ("compose_input", ".env", "sets COMPOSE_PROJECT_NAME"),
        ("compose_input", "compose.yaml", "regular empty file"),
        ("compose_input", "docker-compose.override.yml", "regular file"),
    ]


def test_a_data_dir_without_data_under_a_running_chroma_is_moved_data(declared, converged):
    converged.stack["containers"][0]["config_hash"] = converged.stack["declared_hashes"]["chroma"]
    converged.data_dirs[f"{ROOT}/chroma_data"] = None  # moved away: the container holds it
    assert ("data_dir_moved", "chroma_data", "missing while fx-chroma-1 runs (its next start "
            "would serve an empty database)") in _items(declared, converged)  # fmt: skip
    converged.stack["containers"][0]["state"] = "exited"  # nothing serves it: only missing
    assert "data_dir_moved" not in kinds(declared, converged)


def test_a_certificate_due_for_renewal_with_other_names_or_not_served_is_drift():
    from checks.compare import compare_certificate

    settings = load_settings(
        {"chroma_auth_proxy": True, "chroma_tls": "internal-ca", "chroma_tls_ca_dir": "/ca"}
    )
    declared = Declared(settings, 0, 0, "t" * 16)
    now = 1_800_000_000.0
    good = {"fingerprint": "AA", "not_after": now + 90 * 86400, "names": ["localhost", "127.0.0.1"]}

    def items(file, served="AA", names=("127.0.0.1", "localhost")):
        facts = HostFacts({}, {}, {}, {}, [], certificate={"file": file, "served": served},
                          certificate_names=names, now=now)  # fmt: skip
        return [(item.kind, item.expected, item.actual) for item in compare_certificate(
            declared, facts)]  # fmt: skip

    assert items(good) == []
    due = items({**good, "not_after": now + 10 * 86400})
    assert due == [("tls_certificate", "valid beyond 30 days", "ends 2027-01-25T08:00:00Z")]
    assert items(good, names=("db1", "localhost"))[0][1:] == ("db1, localhost",
                                                             "localhost, 127.0.0.1")  # fmt: skip
    assert items(good, served="BB")[0][2] == "serves another"
    assert items(None)[0][2] == "none readable"
    # TLS off: nothing to compare.
    plain = Declared(load_settings({"chroma_auth_proxy": True}), 0, 0, "t" * 16)
    assert compare_certificate(plain, HostFacts({}, {}, {}, {}, [], certificate={})) == []
