"""Helpers shared by the facts: quoting, splitting batched output, parse errors."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from pyinfra.api.exceptions import FactProcessError

MARK = "@@"


def shell_word(value: object) -> str:
    """One shell word, whatever ``value`` holds."""
    return shlex.quote(str(value))


def sections(lines: Iterable[str]) -> dict[str, list[str]]:
    """Split output made of ``@@name`` marker lines into named sections.

    Lines before the first marker are dropped; a section that printed nothing
    is present with an empty list, so "the part ran" and "it printed" differ.
    """
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


def to_int(value: str, fact: str, what: str) -> int:
    """``int(value)``, or the fact's parse error naming ``what`` was not a number."""
    try:
        return int(value.strip())
    except ValueError:
        raise parse_error(fact, f"{what} is not a number: {value!r}") from None
