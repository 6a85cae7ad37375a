"""files/chroma_maintain.py's report, its findings and metrics, and maintain.py's command line.

The report runs as the host runs it, on a data dir laid out as Chroma lays it out
(segment dirs named by UUID beside chroma.sqlite3), with a database whose free pages
and records are made here; every number it gives is checked against SQLite or the
filesystem read another way. The real images are in tests/integration/test_maintain.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from checks.maintain_metrics import HostNumbers, render

ROOT = Path(__file__).resolve().parent.parent.parent
PROGRAM = ROOT / "files" / "chroma_maintain.py"
DIMENSION = 8


def chroma_data_dir(data: Path, records: int, deleted: int) -> tuple[str, str]:
    """A data dir: one collection of ``records`` (``deleted`` of them deleted after), its
    VECTOR segment's dir, and an orphaned one; the two dir names."""
    data.mkdir()
    db = sqlite3.connect(data / "chroma.sqlite3")
    named, orphan = str(uuid.uuid4()), str(uuid.uuid4())
    db.executescript(
        "CREATE TABLE collections (id TEXT, name TEXT, dimension INTEGER, database_id TEXT,"
        " config_json_str TEXT);"
        "CREATE TABLE segments (id TEXT, type TEXT, scope TEXT, collection TEXT);"
        "CREATE TABLE embeddings (id INTEGER PRIMARY KEY, segment_id TEXT, embedding_id TEXT);"
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, body TEXT);"
    )
    db.execute("INSERT INTO collections VALUES ('c1', 'docs', ?, 'd1', '{}')", (DIMENSION,))
    db.execute("INSERT INTO segments VALUES ('m1', 'sqlite', 'METADATA', 'c1')")
    db.execute("INSERT INTO segments VALUES (?, 'hnsw', 'VECTOR', 'c1')", (named,))
    db.executemany(
        "INSERT INTO embeddings (segment_id, embedding_id) VALUES ('m1', ?)",
        [(f"id{i}",) for i in range(records)],
    )
    db.executemany("INSERT INTO blobs (body) VALUES (?)", [("x" * 4000,) for _ in range(600)])
    db.commit()
    db.execute("DELETE FROM blobs")  # ~2.4 MB of free pages
    db.execute("DELETE FROM embeddings WHERE id <= ?", (deleted,))
    db.commit()
    db.close()
    for name, size in ((named, 1000), (orphan, 3000)):
        (data / name).mkdir()
        (data / name / "data_level0.bin").write_bytes(b"\0" * size)
        (data / name / "header.bin").write_bytes(b"\1" * 100)
    (data / "not-a-segment").mkdir()  # never ours to judge
    return named, orphan


def run_report(project: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(PROGRAM), "report", "--project-dir", str(project),
         "--data-dir", "chroma_data", *extra],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_the_report_names_orphans_free_pages_records_and_memory(tmp_path):
    project = tmp_path / "a project's dir"
    project.mkdir()
    data = project / "chroma_data"
    _named, orphan = chroma_data_dir(data, records=2500, deleted=500)
    sqlite = data / "chroma.sqlite3"
    db = sqlite3.connect(sqlite)
    free_pages = db.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    os.chmod(sqlite, 0o444)  # never opened for writing
    before = sqlite.read_bytes()

    found = run_report(project, "--mem-limit", str(10 * 1024 * 1024))

    assert sqlite.read_bytes() == before
    assert found["orphans"] == [{"name": orphan, "bytes": 3100}]
    assert found["orphaned_bytes"] == 3100
    assert found["reclaimable_bytes"] == free_pages * page_size > 1024 * 1024
    assert found["sqlite_bytes"] == sqlite.stat().st_size
    assert found["records"] == 2000
    assert [(c["name"], c["records"], c["dimension"]) for c in found["collections"]] == [
        ("docs", 2000, DIMENSION)
    ]
    per_record = DIMENSION * 4 + (2 * 16 + 1) * 4 + 8 + 64
    assert found["index_memory_bytes"] == 2000 * per_record
    assert found["memory_limit_source"] == "chroma_mem_limit"
    data_bytes = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    assert found["data_bytes"] == data_bytes
    assert found["vacuum_needs_bytes"] > found["sqlite_bytes"]
    kinds = [item["kind"] for item in found["findings"]]
    assert kinds == ["orphaned_segments", "sqlite_reclaimable"]


def test_an_index_near_the_memory_limit_is_a_finding(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    chroma_data_dir(project / "chroma_data", records=2000, deleted=0)
    found = run_report(project, "--mem-limit", str(2000 * 100))
    assert "index_memory" in [item["kind"] for item in found["findings"]]


def test_a_backup_dir_not_made_yet_is_read_on_the_disk_it_will_be_made_on(tmp_path):
    """The first backup makes its dir: until then the free space is its parent's, not 0
    (which was a disk_headroom finding on every host that had not backed up yet)."""
    project = tmp_path / "p"
    project.mkdir()
    chroma_data_dir(project / "chroma_data", records=10, deleted=0)
    target = tmp_path / "backups" / "not" / "made"
    found = run_report(project, "--backup-target", str(target))
    assert found["backup_target"] == str(target)
    assert found["backup_target_free_bytes"] > 0
    assert "disk_headroom" not in [item["kind"] for item in found["findings"]]


def test_no_data_dir_is_one_line_and_exit_1(tmp_path):
    done = subprocess.run(
        [sys.executable, str(PROGRAM), "report", "--project-dir", str(tmp_path),
         "--data-dir", "chroma_data"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("chroma_data_dir: ")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_host_and_control_machine_write_the_same_metrics(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    chroma_data_dir(project / "chroma_data", records=2100, deleted=100)
    textfile = tmp_path / "maintain.prom"
    found = run_report(project, "--textfile", str(textfile), "--host", "web-1",
                       "--project-name", "kb")  # fmt: skip
    on_host = samples(textfile.read_text())
    on_control = samples(render([HostNumbers("web-1", "kb", found)]))
    assert on_host == on_control
    labels = (("host", "web-1"), ("project", "kb"))
    assert on_host[("chroma_deploy_records", labels)] == 2000
    assert on_host[("chroma_deploy_orphaned_segment_bytes", labels)] == 3100
    assert on_host[("chroma_deploy_collections", labels)] == 1
    assert oct(textfile.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["@local", "--apply", "everything"], "argument --apply: invalid choice"),
        (["@local", "--data", "chroma_maintain_apply=vacuum"], "give --apply"),
        (["no-such-inventory.py"], "no such file"),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_1(argv, said):
    done = subprocess.run(
        [sys.executable, str(ROOT / "maintain.py"), *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert said in done.stderr
    assert "Traceback" not in done.stderr


def test_the_json_document_fits_the_published_schema(tmp_path):
    import jsonschema

    import maintain

    project = tmp_path / "p"
    project.mkdir()
    chroma_data_dir(project / "chroma_data", records=2000, deleted=0)
    reports = [
        maintain.HostReport("web-1", "kb", report=run_report(project)),
        maintain.HostReport("web-2", "kb", error="cannot connect: timed out"),
    ]
    document = json.loads(maintain.render_json(reports))
    schema = json.loads((ROOT / "schemas" / "maintain.schema.json").read_text())
    jsonschema.validate(document, schema)
    assert document["exit_code"] == 1
    assert document["hosts"]["web-1"]["status"] == "findings"
    assert "web-1: 1 collection(s), 2000 record(s)" in maintain.render_text(reports)


def test_drift_textfile_holds_the_maintenance_families_beside_its_own(tmp_path):
    import drift

    project = tmp_path / "p"
    project.mkdir()
    chroma_data_dir(project / "chroma_data", records=2000, deleted=0)
    reports = [
        drift.HostReport("web-1", checked_at=1.0, duration_seconds=0.5,
                         maintenance=run_report(project), project="kb"),
        drift.HostReport("web-2", error="cannot connect", checked_at=1.0),
    ]  # fmt: skip
    found = samples(drift.render_metrics(reports))
    labels = (("host", "web-1"), ("project", "kb"))
    assert found[("chroma_deploy_records", labels)] == 2000
    assert found[("chroma_deploy_check_success", (("host", "web-1"),))] == 1
    assert not any(name == "chroma_deploy_records" and ("host", "web-2") in key
                   for name, key in found)  # fmt: skip


def test_a_collection_made_while_the_report_reads_is_no_orphan(tmp_path, monkeypatch):
    """The attack's row 6: the dirs were listed after the database was copied, so a
    collection made in between (its segment row, then its first flush's dir) was reported
    as an orphan. Listed first, a dir the copy does not name is a real orphan."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("chroma_maintain_under_test", PROGRAM)
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    project = tmp_path / "p"
    project.mkdir()
    data = project / "chroma_data"
    _named, orphan = chroma_data_dir(data, records=10, deleted=0)
    copy, new = tool.private_copy, str(uuid.uuid4())

    @contextlib.contextmanager
    def copy_then_a_new_collection(path):
        with copy(path) as db:
            live = sqlite3.connect(data / "chroma.sqlite3")
            live.execute("INSERT INTO segments VALUES (?, 'hnsw', 'VECTOR', 'c2')", (new,))
            live.commit()
            live.close()
            (data / new).mkdir()
            (data / new / "header.bin").write_bytes(b"hnsw")
            yield db

    monkeypatch.setattr(tool, "private_copy", copy_then_a_new_collection)
    found = tool.report(str(data), None, None)
    assert [item["name"] for item in found["orphans"]] == [orphan]
