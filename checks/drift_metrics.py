"""drift.py's results in Prometheus' text exposition format, for node_exporter's textfile collector.

Why a file: node_exporter already runs on most monitored servers and its textfile
collector serves every ``*.prom`` file of one dir, so a file that a cron'd
``drift.py --textfile`` rewrites is how drift reaches Prometheus without a daemon of
our own. :func:`render` is a pure function of drift's per-host results, so every
line of it has a unit test; :func:`write_textfile` replaces the file atomically, so
the collector reads a whole old file or a whole new one, never half of one.

The text is written by prometheus_client (the Prometheus project's Python client:
escaping, number format, HELP and TYPE lines), which adds 40-60 ms of imports to a
drift run (measured with ``python -X importtime``). Its ``write_to_textfile`` is not
used: it neither fsyncs the file nor its dir, writes with the caller's umask (0600
under cron's 077: unreadable to node_exporter), and leaves its temporary file behind
when interrupted; :func:`write_textfile` does all three.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "chroma_deploy_"
STATUSES = ("ok", "drift", "error")

# The kinds drift.py reports, from the published JSON schema (the one list users
# see). Every kind gets a sample for every checked host, 0 when absent, so that
# `sum by (host) (...)` and `== 0` work without absent() and a repaired host's
# series go to 0 instead of vanishing.
_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "drift.schema.json"
DRIFT_KINDS: tuple[str, ...] = tuple(
    json.loads(_SCHEMA.read_text())["$defs"]["item"]["properties"]["kind"]["enum"]
)


@dataclass(frozen=True)
class HostResult:
    """What the metrics say about one host: drift's status, the kinds of its items, timing."""

    host: str
    status: str  # ok, drift or error
    kinds: Sequence[str]  # one entry per drift item
    checked_at: float  # Unix time the check of this host finished
    duration_seconds: float
    tls_cert_expiry: float | None = None  # Unix time the proxy's certificate ends (TLS on)


def _finite(value: float) -> float:
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return value


def _gauge(name: str, help_text: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", help_text, labels=labels)


class _Families(Collector):
    """The run's five families, as prometheus_client's exposition asks for them."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(results: Sequence[HostResult], kinds: Sequence[str] = DRIFT_KINDS) -> str:
    """The text exposition of one drift run: five gauge families, hosts in the given order.

    A host that could not be checked (status error) has no drift_items samples: its
    drift is unknown, not zero. Its status, check_success 0 and timing still appear.
    prometheus_client writes the text (escaping, number format); a status outside
    STATUSES or a time that is not a finite number is refused here, never written.
    """
    drift_items = _gauge(
        "drift_items",
        "Differences between the host and what deploy.py declares, by kind "
        "(absent when the host could not be checked).",
        ["host", "kind"],
    )
    host_status = _gauge(
        "host_status",
        "1 for the status of the host's last drift check (ok, drift or error), 0 for the others.",
        ["host", "status"],
    )
    check_success = _gauge(
        "check_success",
        "1 if the host could be checked (status ok or drift), 0 if not (error).",
        ["host"],
    )
    last_check = _gauge(
        "last_check_timestamp_seconds",
        "Unix time at which the host's last drift check finished.",
        ["host"],
    )
    duration = _gauge(
        "check_duration_seconds",
        "Seconds the host's last drift check took: connecting, reading facts, comparing.",
        ["host"],
    )
    tls_expiry = _gauge(
        "tls_cert_expiry_timestamp_seconds",
        "Unix time at which the auth proxy's certificate ends (hosts with TLS on).",
        ["host"],
    )
    for result in results:
        if result.tls_cert_expiry is not None:
            tls_expiry.add_metric([result.host], _finite(result.tls_cert_expiry))
        if result.status not in STATUSES:
            raise ValueError(f"{result.host}: status {result.status!r} is not one of {STATUSES}")
        if result.status != "error":
            counts = Counter(result.kinds)
            for kind in [*kinds, *sorted(set(counts) - set(kinds))]:
                drift_items.add_metric([result.host, kind], counts[kind])
        for status in STATUSES:
            host_status.add_metric([result.host, status], int(result.status == status))
        check_success.add_metric([result.host], int(result.status != "error"))
        last_check.add_metric([result.host], _finite(result.checked_at))
        duration.add_metric([result.host], _finite(result.duration_seconds))
    families = [drift_items, host_status, check_success, last_check, duration, tls_expiry]
    return generate_latest(_Families(families)).decode("utf-8")


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, or leave it as it was and raise OSError.

    The text goes to a temporary file with a unique name in the same dir (so two runs
    never share one, and the rename stays on one filesystem), is fsynced, then renamed
    over ``path``. The temporary name ends in ``.tmp``, which the textfile collector
    (``*.prom``) never reads; on any failure it is removed. Mode 0644: node_exporter
    runs as its own user, and the file holds host names and counts only.
    """
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), 0o644)
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    # The rename itself survives a crash only once the dir is on disk too.
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
