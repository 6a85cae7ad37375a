"""Every fact against recorded host output, as pyinfra's own fact tests do.

Each JSON under tests/fixtures/facts/<module>.<Fact>/ holds the fact's
arguments, the command it must build, what a real host printed (recorded on
a machine with Docker, or with Docker hidden for the absent cases), and the
value the fact must return, or the error it must raise.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.exceptions import FactProcessError

from facts.project import SafetyState

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "facts"
CASES = sorted(FIXTURES.glob("*/*.json"))


def _fact_class(case: Path) -> type:
    module, name = case.parent.name.rsplit(".", 1)
    return getattr(importlib.import_module(f"facts.{module}"), name)


def fact_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The fixture's arguments; a Batch's parts name their facts as ``module.Fact``."""
    if "parts" not in args:
        return args
    parts = []
    for name, kwargs in args["parts"]:
        module, fact = name.rsplit(".", 1)
        package = "pyinfra.facts" if module in {"server", "files"} else "facts"
        parts.append((getattr(importlib.import_module(f"{package}.{module}"), fact), kwargs))
    return {"parts": parts}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_fact_builds_its_command_and_reads_recorded_output(case: Path):
    fixture = json.loads(case.read_text())
    fact = _fact_class(case)()
    assert str(fact.command(**fact_arguments(fixture["args"]))) == fixture["command"]
    if "raises" in fixture:
        with pytest.raises(FactProcessError):
            fact.process(fixture["output"])
        return
    assert fact.process(fixture["output"]) == fixture["fact"]


def _all_facts() -> set[str]:
    """Every fact class defined in facts/, found by import, not by a hand-kept list."""
    import pkgutil

    from pyinfra.api import FactBase

    import facts

    names = set()
    for module in pkgutil.iter_modules(facts.__path__):
        loaded = importlib.import_module(f"facts.{module.name}")
        for attribute in vars(loaded).values():
            if (
                isinstance(attribute, type)
                and issubclass(attribute, FactBase)
                and attribute.__module__ == loaded.__name__
            ):
                names.add(f"{module.name}.{attribute.__name__}")
    return names


# What "absent" means for each fact, and the recorded cases that say it. The
# predicate must hold for exactly those cases: every other case of the fact
# (a present one) violates it, so a fact that read a present host as absent, or
# an absent one as present, fails here.
ABSENT: dict[str, tuple[Callable[[Any], bool], set[str]]] = {
    "accounts.Accounts": (lambda f: f["owner"] is None, {"no_such_owner"}),
    "acme.AcmeCertificate": (lambda f: not f["lego"] and f["file"] is None, {"absent"}),
    "archive.BackupArchive": (lambda f: f["archive"] is False, {"no_archive"}),
    "snapshots.OffsiteSnapshots": (lambda f: f["readable"] is False, {"not_readable_yet"}),
    "accounts.UsedIds": (lambda f: f is None, {"no_getent"}),
    "chroma.ChromaHealth": (lambda f: f["reachable"] is False, {"down", "no_curl_down"}),
    "chroma.ChromaInventory": (
        lambda f: f["live"] is None and f["manifest"] is None,
        {"tool_not_uploaded"},
    ),
    "compose.ComposeStack": (
        lambda f: f["containers"] == [],
        {"daemon_down", "docker_absent", "no_file_no_containers"},
    ),
    "compose.ContainerLayerData": (lambda f: f == {}, {"no_such_container"}),
    "compose.ContainerMounts": (
        lambda f: f is None,
        {"docker_absent", "no_container", "other_service"},
    ),
    "compose.NamedContainers": (lambda f: f == {}, {"none"}),
    # Not refused: no such container, or its last start was not refused.
    "schema_guard.SchemaRefusal": (lambda f: not f["refused"], {"no_such_container", "started"}),
    "cron.Cron": (lambda f: f["cron"] is None, {"absent"}),
    "tokens.ProxyClients": (lambda f: f["clients"] is None, {"absent"}),
    "compose.PortHolder": (lambda f: f["listener"] is None, {"free"}),
    "datahomes.DataHomes": (lambda f: f["mounts"] == [], {"docker_absent"}),
    # Nothing open: the container stopped, or there is none of that name.
    "datahomes.OpenedDataDir": (lambda f: f["inodes"] == {}, {"stopped", "no_such_container"}),
    # No schema: no database, no python3 to read it, or a database with no migration recorded.
    "datahomes.DataSchema": (
        lambda f: f["levels"] is None,
        {"no_database", "no_python3", "schema_less"},
    ),
    "datadirs.DataDirs": (
        lambda f: all(v is None for v in f.values()),
        {"all_missing", "no_paths"},
    ),
    # The engine, not the CLI: a docker command alone is no Docker Engine.
    "docker.DockerEngine": (lambda f: f["dockerd"] is None, {"absent", "cli_only"}),
    "docker.DockerImage": (lambda f: f is None, {"absent", "daemon_down", "docker_absent"}),
    # No answer from the host's tool: the deploy then reads the repository as unknown.
    "offsite.ResticRepository": (
        lambda f: f["verdict"] is None,
        {"config_missing", "tool_not_uploaded"},
    ),
    # No report: the tool is not on the host yet (maintain.py puts it there), or no data dir.
    "maintenance.MaintenanceReport": (
        lambda f: f["report"] is None,
        {"tool_not_uploaded", "no_data_dir"},
    ),
    "project.ProjectFiles": (lambda f: f["dir"] is None, {"absent"}),
    "project.SafetyState": (lambda f: f == SafetyState.default(), {"no_project_dir"}),
    # A Batch is absent where a part could not be read (it is then read alone).
    "batch.Batch": (
        lambda f: f == [] or {"read": False, "value": None} in f,
        {"no_parts", "a_part_that_fails_is_read_again_alone"},
    ),
    "tls.ProxyCertificate": (lambda f: f["file"] is None and f["served"] is None, {"absent"}),
    "volumes.LegacyVolumes": (lambda f: f == [], {"docker_absent", "no_names", "none"}),
}


def test_every_fact_has_a_present_and_an_absent_case():
    assert {case.parent.name for case in CASES} == _all_facts() == set(ABSENT)
    for name, (is_absent, absent_cases) in ABSENT.items():
        values = {
            c.stem: json.loads(c.read_text())["fact"]
            for c in CASES
            if c.parent.name == name and "raises" not in json.loads(c.read_text())
        }
        assert {stem for stem, value in values.items() if is_absent(value)} == absent_cases, name
        assert set(values) - absent_cases, f"{name}: no present case"
