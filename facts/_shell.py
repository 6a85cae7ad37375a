"""Helpers shared by the facts: quoting and splitting batched output."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from pyinfra.api.exceptions import FactProcessError

MARK = "@@"


def q(value: object) -> str:
    return shlex.quote(str(value))


def sections(lines: Iterable[str]) -> dict[str, list[str]]:
    """Split output made of ``@@name`` marker lines into named sections."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith(MARK):
            current = out.setdefault(line[len(MARK) :].strip(), [])
        elif current is not None:
            current.append(line)
    return out


def parse_error(fact: str, detail: str) -> FactProcessError:
    return FactProcessError(f"{fact}: could not read the host's answer ({detail})")
