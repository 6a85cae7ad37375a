"""maintain.py's per-host numbers as Prometheus metrics, for node_exporter's textfile collector.

The same families and labels as the host program writes from the host's own schedule
(files/chroma_maintain.py ``metrics_text``, standard library only: the host has no
prometheus_client); a unit test reads both with prometheus_client's parser and
compares them. Written here by prometheus_client and replaced atomically by
checks.drift_metrics.write_textfile, as drift's are. A host that could not be read
has no samples: its numbers are unknown, not zero.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_PROGRAM = Path(__file__).resolve().parent.parent / "files" / "chroma_maintain.py"


def _host_metrics() -> tuple[tuple[str, str, str], ...]:
    """The host program's list of metrics (name, help, field): one list for both sides."""
    spec = importlib.util.spec_from_file_location("chroma_maintain", _PROGRAM)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.METRICS)


METRICS = _host_metrics()
PREFIX = "chroma_deploy_"


@dataclass(frozen=True)
class HostNumbers:
    """One host's report (files/chroma_maintain.py report's JSON), by inventory name."""

    host: str
    project: str
    report: dict[str, Any]


class _Families(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(results: Sequence[HostNumbers]) -> str:
    """The text exposition of one maintain.py run: seven gauge families, hosts in order."""
    families = []
    for name, help_text, field in METRICS:
        family = GaugeMetricFamily(f"{PREFIX}{name}", help_text, labels=["host", "project"])
        for result in results:
            values = dict(result.report, collections=len(result.report["collections"]))
            family.add_metric([result.host, result.project], int(values[field]))
        families.append(family)
    return generate_latest(_Families(families)).decode("utf-8")
