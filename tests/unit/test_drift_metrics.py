"""checks.drift_metrics: the textfile drift.py writes, read back by Prometheus' own parser.

The parser is prometheus_client's (the Prometheus project's Python client), so a
line the collector would reject fails here; names are also checked against the
data model's regex and the naming conventions (prefix, base unit suffix, no
_total on a gauge).
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from checks import drift_metrics
from checks.drift_metrics import DRIFT_KINDS, HostResult, render, write_textfile

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")  # Prometheus' metric name pattern
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
FAMILIES = {
    "chroma_deploy_drift_items": {"host", "kind"},
    "chroma_deploy_host_status": {"host", "status"},
    "chroma_deploy_check_success": {"host"},
    "chroma_deploy_last_check_timestamp_seconds": {"host"},
    "chroma_deploy_check_duration_seconds": {"host"},
    "chroma_deploy_tls_cert_expiry_timestamp_seconds": {"host"},
}

RESULTS = [
    HostResult("@local", "ok", [], 1764340000.25, 0.5, tls_cert_expiry=1795876000.0),
    HostResult("db1.example.com", "drift", ["mode", "gitignore", "mode"], 1764340001.5, 1.75),
    HostResult("db2.example.com", "error", [], 1764340002.0, 0.0625),
]


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Family name -> {sorted labels: value}, checking each family's metadata on the way."""
    families = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family
        assert family.documentation, family
        samples = {}
        for sample in family.samples:
            assert sample.name == family.name, sample  # gauges have no suffixed samples
            samples[tuple(sorted(sample.labels.items()))] = sample.value
        assert family.name not in families, f"{family.name} appears twice"
        families[family.name] = samples
    return families


def value(families, name: str, **labels: str) -> float:
    return families[name][tuple(sorted(labels.items()))]


def test_every_family_parses_and_follows_the_naming_conventions():
    text = render(RESULTS)
    families = parse(text)
    assert set(families) == set(FAMILIES)
    for name, labels in FAMILIES.items():
        assert NAME.match(name) and name.startswith("chroma_deploy_"), name
        assert not name.endswith("_total"), "a gauge is not a counter"
        if "timestamp" in name or "duration" in name:
            assert name.endswith("_seconds"), "times are in the base unit, seconds"
        for sample_labels in families[name]:
            assert {key for key, _ in sample_labels} == labels, (name, sample_labels)
            assert all(LABEL.match(key) for key, _ in sample_labels)
    # HELP and TYPE precede each family's samples, one block per family.
    headers = [line.split()[1:3] for line in text.splitlines() if line.startswith("#")]
    assert headers == [[kind, name] for name in FAMILIES for kind in ("HELP", "TYPE")]
    assert text.endswith("\n")


def test_drift_items_count_each_kind_and_every_kind_has_a_sample():
    families = parse(render(RESULTS))
    drifted = {
        dict(labels)["kind"]: count
        for labels, count in families["chroma_deploy_drift_items"].items()
        if dict(labels)["host"] == "db1.example.com"
    }
    assert drifted["mode"] == 2
    assert drifted["gitignore"] == 1
    assert set(drifted) == set(DRIFT_KINDS)
    assert sum(drifted.values()) == 3
    clean = [v for k, v in families["chroma_deploy_drift_items"].items() if ("host", "@local") in k]
    assert clean == [0] * len(DRIFT_KINDS)


def test_a_kind_outside_the_schema_still_counts():
    families = parse(render([HostResult("h", "drift", ["brand_new"], 1.0, 1.0)]))
    assert value(families, "chroma_deploy_drift_items", host="h", kind="brand_new") == 1


@pytest.mark.parametrize(("host", "status"), [(r.host, r.status) for r in RESULTS])
def test_host_status_is_1_for_the_current_status_only(host, status):
    families = parse(render(RESULTS))
    for each in ("ok", "drift", "error"):
        expected = 1 if each == status else 0
        assert value(families, "chroma_deploy_host_status", host=host, status=each) == expected
    success = value(families, "chroma_deploy_check_success", host=host)
    assert success == (0 if status == "error" else 1)


def test_an_error_host_has_no_drift_items_but_its_status_and_timing():
    families = parse(render(RESULTS))
    hosts = {dict(labels)["host"] for labels in families["chroma_deploy_drift_items"]}
    assert hosts == {"@local", "db1.example.com"}
    assert value(families, "chroma_deploy_check_success", host="db2.example.com") == 0
    assert value(families, "chroma_deploy_check_duration_seconds", host="db2.example.com") == 0.0625


def test_timestamps_and_durations_keep_their_precision():
    families = parse(render(RESULTS))
    stamp = value(families, "chroma_deploy_last_check_timestamp_seconds", host="db1.example.com")
    assert stamp == 1764340001.5
    assert value(families, "chroma_deploy_check_duration_seconds", host="@local") == 0.5


@pytest.mark.parametrize(
    "host", ['quote"d', "back\\slash", "new\nline", 'all \\" \n of them\\', "ünïcode host"]
)
def test_label_values_are_escaped_and_read_back_unchanged(host):
    text = render([HostResult(host, "drift", ["mode"], 1.0, 2.0)])
    assert sum(line.startswith("chroma_deploy_") for line in text.splitlines()) == (
        len(DRIFT_KINDS) + 3 + 3
    ), "a line feed in a value must not start a new line"
    families = parse(text)
    assert value(families, "chroma_deploy_drift_items", host=host, kind="mode") == 1
    assert value(families, "chroma_deploy_host_status", host=host, status="drift") == 1


def test_no_hosts_still_gives_a_valid_file():
    families = parse(render([]))
    assert families == {name: {} for name in FAMILIES}


@pytest.mark.parametrize(
    "result",
    [
        HostResult("h", "unknown", [], 1.0, 1.0),
        HostResult("h", "ok", [], float("nan"), 1.0),
        HostResult("h", "ok", [], 1.0, float("inf")),
    ],
)
def test_impossible_values_are_refused_not_written(result):
    with pytest.raises(ValueError):
        render([result])


# ---- writing the file ----------------------------------------------------------------------


def leftovers(directory: Path, target: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p != target)


def test_write_replaces_the_file_readable_by_the_collector(tmp_path):
    target = tmp_path / "chroma_deploy.prom"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    text = render(RESULTS)
    write_textfile(target, text)
    assert target.read_text() == text
    assert target.stat().st_mode & 0o777 == 0o644
    assert leftovers(tmp_path, target) == []


def test_the_written_file_is_what_prometheus_reads(tmp_path):
    """render's text (prometheus_client's exposition) through our writer, read back from disk."""
    target = tmp_path / "chroma_deploy.prom"
    write_textfile(target, render(RESULTS))
    families = parse(target.read_text(encoding="utf-8"))
    assert set(families) == set(FAMILIES)
    assert value(families, "chroma_deploy_drift_items", host="db1.example.com", kind="mode") == 2
    assert value(families, "chroma_deploy_host_status", host="db2.example.com", status="error") == 1


def test_temporary_names_are_unique_per_write(tmp_path, monkeypatch):
    """Two runs at once must not share a temporary file (issue 16 part 4's mv failure)."""
    target = tmp_path / "chroma_deploy.prom"
    seen: list[str] = []
    real_replace = os.replace

    def recording_replace(source, destination):
        seen.append(os.path.basename(source))
        real_replace(source, destination)

    monkeypatch.setattr(drift_metrics.os, "replace", recording_replace)
    write_textfile(target, "a 1\n")
    write_textfile(target, "a 2\n")
    assert len(set(seen)) == 2
    for name in seen:
        assert name.startswith(".chroma_deploy.prom.") and name.endswith(".tmp")
        assert not name.endswith(".prom"), "the collector reads *.prom: never a temporary"


def test_a_write_failing_half_way_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "chroma_deploy.prom"
    old = render(RESULTS[:1])
    target.write_text(old)

    def failing_fsync(fd):
        # Half the new text is already in the temporary file when the disk fails.
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(drift_metrics.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_textfile(target, render(RESULTS))
    assert target.read_text() == old
    assert leftovers(tmp_path, target) == []


def test_an_interrupt_during_the_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "chroma_deploy.prom"
    target.write_text("old 1\n")

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(drift_metrics.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_textfile(target, render(RESULTS))
    assert target.read_text() == "old 1\n"
    assert leftovers(tmp_path, target) == []


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, filled up after the old textfile is written. Needs root (mount)."""
    mount = tmp_path / f"full{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_the_old_file_whole_and_no_temporary(full_disk):
    target = full_disk / "chroma_deploy.prom"
    old = render(RESULTS[:1])
    target.write_text(old)
    filler = full_disk / "filler"
    with pytest.raises(OSError) as full, open(filler, "wb", buffering=0) as stream:
        while True:
            stream.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    big = render([HostResult(f"host{i}", "drift", ["mode"], 1.0, 1.0) for i in range(100)])
    assert len(big) > 64 * 1024
    with pytest.raises(OSError) as failed:
        write_textfile(target, big)
    assert failed.value.errno == errno.ENOSPC
    assert target.read_text() == old
    assert leftovers(full_disk, target) == ["filler"]


# ---- drift.py's side: the option and the mapping from its reports ----------------------------


def test_drift_refuses_a_textfile_it_could_not_write_before_checking_any_host(tmp_path):
    import drift

    with pytest.raises(drift.UsageError, match="is a directory: name a file"):
        drift.parse_args(["@local", "--textfile", str(tmp_path)])
    with pytest.raises(drift.UsageError, match=f"{tmp_path}/no is not a directory"):
        drift.parse_args(["@local", "--textfile", str(tmp_path / "no" / "x.prom")])
    assert drift.parse_args(["@local", "--textfile", str(tmp_path / "x.prom")]).textfile == (
        tmp_path / "x.prom"
    )


def test_drift_reports_become_metrics_with_their_kinds_status_and_timing():
    import drift
    from checks.compare import DriftItem

    reports = [
        drift.HostReport("a", [DriftItem("mode", "/p", "750", "755")], None, 12.5, 0.25),
        drift.HostReport("b", [], "cannot connect: refused", 13.0, 0.125),
    ]
    families = parse(drift.render_metrics(reports))
    assert value(families, "chroma_deploy_drift_items", host="a", kind="mode") == 1
    assert value(families, "chroma_deploy_host_status", host="a", status="drift") == 1
    assert value(families, "chroma_deploy_host_status", host="b", status="error") == 1
    assert value(families, "chroma_deploy_last_check_timestamp_seconds", host="a") == 12.5
    assert value(families, "chroma_deploy_check_duration_seconds", host="b") == 0.125
    # Only hosts whose proxy serves TLS have a certificate end.
    assert (
        "chroma_deploy_tls_cert_expiry_timestamp_seconds"
        not in drift.render_metrics(reports).split(
            "# TYPE chroma_deploy_tls_cert_expiry_timestamp_seconds gauge"
        )[1]
    )
    reports[0].tls_cert_expiry = 1795876000.0
    families = parse(drift.render_metrics(reports))
    assert value(families, "chroma_deploy_tls_cert_expiry_timestamp_seconds", host="a") == (
        1795876000.0
    )
    assert "checked_at" not in json.dumps(reports[0].as_dict()), "--json keeps its shape"
