"""files/chroma_safety.py and chroma_inventory.py, run as the host runs them, on real files.

No Docker here: the steps that must not act (a server that does not answer,
a disk without room, archives that are not this project's) are shown on real
files and a real closed port.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parent.parent.parent / "files"


def safety(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FILES / "chroma_safety.py"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the socket goes


def test_a_verification_that_cannot_read_the_server_changes_nothing(tmp_path):
    """Finding 1: connection refused is not 'the data differs': no move, record kept."""
    data_dir = tmp_path / "chroma_data"
    data_dir.mkdir()
    (data_dir / "chroma.sqlite3").write_text("the upgraded data")
    record = tmp_path / ".chroma-deploy" / "upgrade-pending.json"
    record.parent.mkdir()
    record.write_text(json.dumps({
        "kind": "upgrade", "subject": "0.6.3", "from": "0.6.3", "to": "1.5.9",
        "before": {"collections": {"default_tenant/default_database/a": {"count": 1}}},
    }))  # fmt: skip
    result = safety(
        "verify", "--record", str(record), "--url", f"http://127.0.0.1:{closed_port()}",
        "--data-dir", str(data_dir),
    )  # fmt: skip
    assert result.returncode == 1
    assert "could not verify upgrade 0.6.3" in result.stderr
    assert "nothing was changed" in result.stderr
    assert record.is_file()  # still pending: the next deploy checks again
    assert (data_dir / "chroma.sqlite3").read_text() == "the upgraded data"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".chroma-deploy", "chroma_data"]


def manifest(directory: Path, stem: str, **fields: str) -> Path:
    archive = directory / f"{stem}.tar.gz"
    archive.write_text(stem)
    (directory / f"{stem}.sha256").write_text("x")
    (directory / f"{stem}.json").write_text(json.dumps({"collections": {}, **fields}))
    return archive


def test_prune_touches_only_this_projects_archives_and_keeps_the_way_back(tmp_path):
    """Finding: `p-*` matched project `p-x`, and pre-upgrade archives were pruned."""
    other = manifest(tmp_path, "p-x-20200101T000000Z", project="p-x", created="20200101T000000Z")
    way_back = manifest(
        tmp_path, "p-20200101T000000Z-before-1.5.9", project="p", version="0.6.3",
        before_version="1.5.9", created="20200101T000000Z",
    )  # fmt: skip
    old = manifest(tmp_path, "p-20210101T000000Z", project="p", created="20210101T000000Z")
    new = manifest(tmp_path, "p-20220101T000000Z", project="p", created="20220101T000000Z")
    unknown = tmp_path / "p-20190101T000000Z.tar.gz"  # no manifest: not known to be ours
    unknown.write_text("kept")
    result = safety(
        "prune", "--dir", str(tmp_path), "--project", "p", "--keep", "1", "--version", "1.5.9"
    )
    assert result.returncode == 0, result.stderr
    assert f"pruned: {old}" in result.stdout
    assert not old.exists() and not old.with_suffix("").with_suffix(".json").exists()
    assert other.exists() and way_back.exists() and new.exists() and unknown.exists()


def test_a_copy_refuses_before_anything_moves_when_the_disk_is_full(tmp_path):
    """Finding 6: no space check; now a full disk stops before anything is moved."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        source = tmp_path / "volume"
        source.mkdir()
        (source / "chroma.sqlite3").write_bytes(b"\0" * 4096)
        data_dir = small / "chroma_data"
        data_dir.mkdir()
        record = small / ".chroma-deploy" / "migration-pending.json"
        result = safety(
            "stage", "--record", str(record), "--kind", "volume", "--subject", "v",
            "--source", str(source), "--data-dir", str(data_dir), "--uid", "0", "--gid", "0",
            "--mode", "750",
        )  # fmt: skip
        assert result.returncode == 1
        assert "not enough space" in result.stderr and "nothing was moved" in result.stderr
        assert sorted(p.name for p in data_dir.iterdir()) == []
        assert not (small / ".chroma_data.chroma-deploy-staging").exists()
    finally:
        subprocess.run(["umount", str(small)], check=False)


def chroma_like_sqlite(path: Path | str) -> sqlite3.Connection:
    """The tables the inventory reads, one record in a second database, left in the WAL.

    The connection stays open (and so the -wal uncheckpointed) until the caller closes it.
    """
    db = sqlite3.connect(path)
    if str(path) != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(
        "CREATE TABLE databases (id TEXT, name TEXT, tenant_id TEXT);"
        "CREATE TABLE collections (id TEXT, name TEXT, database_id TEXT);"
        "CREATE TABLE segments (id TEXT, scope TEXT, collection TEXT);"
        "CREATE TABLE embeddings (id INTEGER, segment_id TEXT, embedding_id TEXT);"
        "CREATE TABLE embedding_metadata (id INTEGER, key TEXT, string_value TEXT,"
        " int_value INTEGER, float_value REAL, bool_value INTEGER);"
        "INSERT INTO databases VALUES ('d1', 'default_database', 'default_tenant');"
        "INSERT INTO databases VALUES ('d2', 'other', 'default_tenant');"
        "INSERT INTO collections VALUES ('c1', 'docs', 'd1'), ('c2', 'docs', 'd2');"
        "INSERT INTO segments VALUES ('s1', 'METADATA', 'c1'), ('s2', 'METADATA', 'c2');"
        "INSERT INTO embeddings VALUES (1, 's1', 'a'), (2, 's2', 'b');"
        "INSERT INTO embedding_metadata VALUES (1, 'chroma:document', 'hello', NULL, NULL, NULL);"
        "INSERT INTO embedding_metadata VALUES (1, 'n', NULL, 5, NULL, NULL);"
        "CREATE TABLE embedding_metadata_array (id INTEGER, key TEXT, string_value TEXT,"
        " int_value INTEGER, float_value REAL, bool_value INTEGER);"
        "INSERT INTO embedding_metadata_array VALUES (1, 'tags', 'b', NULL, NULL, NULL);"
        "INSERT INTO embedding_metadata_array VALUES (1, 'tags', 'a', NULL, NULL, NULL);"
    )
    db.commit()
    return db


def inventory(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(FILES / "chroma_inventory.py"), f"sqlite:{path}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_sqlite_inventory_sees_every_database_and_committed_wal_content(tmp_path):
    """Finding 5: other databases were merged by name and -wal content was ignored."""
    path = tmp_path / "chroma.sqlite3"
    writer = chroma_like_sqlite(path)
    assert (tmp_path / "chroma.sqlite3-wal").stat().st_size > 0  # not checkpointed yet
    found = inventory(path)["collections"]
    assert sorted(found) == ["default_tenant/default_database/docs", "default_tenant/other/docs"]
    assert found["default_tenant/other/docs"]["count"] == 1
    before = found["default_tenant/default_database/docs"]["content_sha256"]
    writer.execute(
        "UPDATE embedding_metadata SET string_value = 'changed' WHERE key LIKE 'chroma:%'"
    )
    writer.commit()
    after = inventory(path)["collections"]["default_tenant/default_database/docs"]
    assert after["content_sha256"] != before  # a changed document shows
    assert after["ids_sha256"] == found["default_tenant/default_database/docs"]["ids_sha256"]
    writer.close()


def test_sqlite_and_api_content_lines_agree_on_lists_bools_and_floats():
    """1.x keeps list metadata in its own table: the SQLite side must read it as the API says."""
    sys.path.insert(0, str(FILES))
    import chroma_inventory

    db = chroma_like_sqlite(":memory:")
    found = chroma_inventory._read_sqlite(db)["collections"]["default_tenant/default_database/docs"]
    # The API's answer for the same record: {"n": 5, "tags": ["b", "a"]}, document "hello".
    api = chroma_inventory.summary({"a": ("hello", {"n": 5, "tags": ["b", "a"]})})
    assert found == api


def test_a_swapped_vector_is_named_and_float_spellings_are_not_a_difference():
    """Issue 27 item 4: records that return another record's vector; 0.x and 1.x spell the
    same float32 differently in JSON (0.10000000149011612 and 0.1), which must not count."""
    sys.path.insert(0, str(FILES))
    import array

    import chroma_inventory

    vectors = {f"mix-{i}": [0.1 * i, -1.5, 1 / (i + 3)] for i in range(6)}
    widened = {key: list(array.array("f", value)) for key, value in vectors.items()}  # as 0.x
    assert widened["mix-1"][0] == 0.10000000149011612
    key = "default_tenant/default_database/mix"
    before = {"collections": {key: {i: chroma_inventory.vector_digest(v)
                                    for i, v in widened.items()}}}  # fmt: skip
    same = {"collections": {key: {i: chroma_inventory.vector_digest(v)
                                  for i, v in vectors.items()}}}  # fmt: skip
    assert chroma_inventory.vector_differences(before, same) == []
    after = json.loads(json.dumps(same))
    now = after["collections"][key]
    now["mix-2"], now["mix-4"] = now["mix-4"], now["mix-2"]
    now["mix-5"] = chroma_inventory.vector_digest([9.0, 9.0, 9.0])
    del now["mix-0"]
    assert chroma_inventory.vector_differences(before, after) == [
        f"{key}: mix-0 is not there",
        f"{key}: mix-2 returns the vector mix-4 had",
        f"{key}: mix-4 returns the vector mix-2 had",
        f"{key}: mix-5 returns another vector",
    ]


def test_a_sampled_collection_read_from_sqlite_checksums_as_the_api_side_does(tmp_path):
    """At SAMPLE_FROM records the content checksum covers a sample, and only the sample's
    metadata rows are read from SQLite: the same checksums as the API side's summary()."""
    sys.path.insert(0, str(FILES))
    from chroma_inventory import SAMPLE_FROM, sqlite_inventory, summary

    path = tmp_path / "chroma.sqlite3"
    chroma_like_sqlite(path).close()
    expected = {}
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO collections VALUES ('c3', 'big', 'd1')")
        db.execute("INSERT INTO segments VALUES ('s3', 'METADATA', 'c3')")
        ids = [f"r{n:06d}" for n in range(SAMPLE_FROM)]
        db.executemany("INSERT INTO embeddings VALUES (?, 's3', ?)",
                       ((10 + n, record_id) for n, record_id in enumerate(ids)))  # fmt: skip
        db.executemany("INSERT INTO embedding_metadata VALUES (?, ?, ?, ?, ?, ?)", (
            row for n in range(SAMPLE_FROM) for row in (
                (10 + n, "chroma:document", f"doc {n}", None, None, None),
                (10 + n, "w", None, None, n / 8, None))))  # fmt: skip
        db.executemany("INSERT INTO embedding_metadata_array VALUES (?, 'tags', ?, NULL, NULL, "
                       "NULL)", ((10 + n, tag) for n in range(0, SAMPLE_FROM, 7)
                                 for tag in ("b", "a")))  # fmt: skip
        for n, record_id in enumerate(ids):
            metadata: dict = {"w": n / 8}
            if n % 7 == 0:
                metadata["tags"] = ["b", "a"]
            expected[record_id] = (f"doc {n}", metadata)
    db.close()
    found = sqlite_inventory(str(path))["collections"]["default_tenant/default_database/big"]
    assert found == summary(expected)
    changed = dict(expected)
    sampled = next(i for i in ids if hashlib.sha256(i.encode()).hexdigest()[0] == "0")
    changed[sampled] = ("another document", expected[sampled][1])
    assert summary(changed)["content_sha256"] != found["content_sha256"]  # the sample counts
