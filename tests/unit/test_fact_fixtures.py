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
from typing import Any

import pytest
from pyinfra.api.exceptions import FactProcessError

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


def test_every_fact_has_a_present_and_an_absent_case():
    assert {case.parent.name for case in CASES} == _all_facts()
    for name in _all_facts():
        values = [json.loads(c.read_text()) for c in CASES if c.parent.name == name]
        results = [v["fact"] for v in values if "raises" not in v]
        assert len(results) >= 2, name
        # "absent" is a value: at least one case is None, empty, or says so.
        assert any(_says_absent(r) for r in results), name


def _says_absent(result: Any) -> bool:
    if result in (None, [], {}):
        return True
    if isinstance(result, list):  # a Batch: a part it could not read
        return {"read": False, "value": None} in result
    return (result.get("docker") is False or result.get("cli") is False
            or result.get("dir") is None or result.get("reachable") is False
            or None in result.values())  # fmt: skip
