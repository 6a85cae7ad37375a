"""Every fact against recorded host output, as pyinfra's own fact tests do.

Each JSON under tests/fixtures/facts/<module>.<Fact>/ holds the fact's
arguments, the command it must build, what a real host printed (recorded on
a machine with Docker, or with Docker hidden for the absent cases), and the
value the fact must return, or the error it must raise.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from pyinfra.api.exceptions import FactProcessError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "facts"
CASES = sorted(FIXTURES.glob("*/*.json"))


def _fact_class(case: Path) -> type:
    module, name = case.parent.name.rsplit(".", 1)
    return getattr(importlib.import_module(f"facts.{module}"), name)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_fact_builds_its_command_and_reads_recorded_output(case: Path):
    fixture = json.loads(case.read_text())
    fact = _fact_class(case)()
    assert str(fact.command(**fixture["args"])) == fixture["command"]
    if "raises" in fixture:
        with pytest.raises(FactProcessError):
            fact.process(fixture["output"])
        return
    assert fact.process(fixture["output"]) == fixture["fact"]


def test_every_fact_has_a_present_and_an_absent_case():
    facts = {case.parent.name for case in CASES}
    assert facts == {
        "accounts.Accounts", "chroma.ChromaHealth", "compose.ComposeStack",
        "compose.ContainerMounts", "datadirs.DataDirs", "docker.DockerEngine",
        "docker.DockerImage", "project.ProjectFiles", "volumes.LegacyVolumes",
    }  # fmt: skip
    for name in facts:
        values = [
            json.loads(case.read_text()).get("fact") for case in CASES if case.parent.name == name
        ]
        assert len(values) >= 2, name
