"""One parser per kind of value: the same spelling means the same in every key of a kind.

The keys of each kind are read from the settings declaration (their type, or the kind
their check declares), never from a hand list, so a new key of a kind is tested too.
Each key keeps its own range and its own refusal line (docs/bad-input.md); what a
spelling means (a whole number, a size, a path, true or false) is decided once.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

import pytest

from declaration.settings import KINDS, PREFIX, Settings, SettingsError, load_settings

HINTS = get_type_hints(Settings)


def keys_of(kind: str) -> list[str]:
    return [PREFIX + f.name for f in fields(Settings) if f.metadata["kind"] == kind]


# "" is not among the spellings: for an optional key it means unset (docs/configuration.md).
def verdict(key: str, value: Any) -> tuple[str, Any]:
    """What the key's own check makes of a value: ("ok", value) or ("refused", "")."""
    check = next(f for f in fields(Settings) if PREFIX + f.name == key).metadata["check"]
    try:
        return ("ok", check(value))
    except ValueError:
        return ("refused", "")


# 30 is inside every whole-number key's range, so only the spelling decides.
INTEGER_SPELLINGS: list[Any] = [
    "30", 30, "+30", "030", "3.0", 3.0, 30.0, " 30", "30 ", "0x1e", "\u0661\u0662", "\u00b2",
    "3_0", "-30", True, False, "thirty", [30],
]  # fmt: skip
BOOLEAN_SPELLINGS: list[Any] = [
    True, False, "true", "True", "FALSE", "yes", "no", "1", "0", 1, 0, 2, "2", " true",
    "true ", "on", "y", "", "none", [True],
]  # fmt: skip
SIZE_SPELLINGS: list[Any] = [
    "10m", "10M", "500k", "1g", "10mb", "10MiB", "10 m", " 10m", "10m ", "+10m", "0x10m",
    "\u0661\u0660m", "10.5m", "m", "0m", True, 10.5,
]  # fmt: skip
PATH_SPELLINGS: list[Any] = [
    "/srv/kb/x", "/srv//kb/x/", "/srv/kb/../x", "srv/kb", "./kb", "/srv/kb/-x", "/srv/kb x",
    " /srv/kb", "/srv/kb;id", "/srv/kb\n", "/srv/k\u00e4", True, 5,
]  # fmt: skip


def test_every_key_of_a_kind_is_typed_as_that_kind():
    """The kinds agree with the declared types: every int key is a whole number, every
    bool key a boolean, so enumerating by kind misses none."""
    for declared in fields(Settings):
        hint = HINTS[declared.name]
        kind = declared.metadata["kind"]
        if hint in (int, int | None):
            assert kind == "whole number", declared.name
        if hint is bool:
            assert kind == "boolean", declared.name
    assert set(KINDS) >= {"whole number", "boolean", "size", "path"}
    for kind in ("whole number", "boolean", "size", "path"):
        assert len(keys_of(kind)) >= 2, kind


SPELLINGS_OF_KIND = {
    "whole number": INTEGER_SPELLINGS,
    "boolean": BOOLEAN_SPELLINGS,
    "size": SIZE_SPELLINGS,
    "path": PATH_SPELLINGS,
}


@pytest.mark.parametrize(
    ("kind", "spelling"),
    [(kind, spelling) for kind, spellings in SPELLINGS_OF_KIND.items() for spelling in spellings],
    ids=repr,
)
def test_a_spelling_means_the_same_in_every_key_of_its_kind(kind, spelling):
    """An integer spelling, say, gets the same verdict from every whole-number key."""
    verdicts = {key: verdict(key, spelling) for key in keys_of(kind)}
    assert len(set(verdicts.values())) == 1, verdicts


def test_the_accepted_spellings_are_the_plain_ones():
    """What the one parser of each kind reads: digits only for a whole number, the six
    words (and 1/0) for a boolean, digits and a unit for a size; a whole number from
    pyinfra's --data (``--data chroma_port=+8001`` arrives as the int 8001) passes."""
    port = "chroma_port"
    assert [s for s in INTEGER_SPELLINGS if verdict(port, s)[0] == "ok"] == ["30", 30, "030"]
    flag = "chroma_install_docker"
    assert [s for s in BOOLEAN_SPELLINGS if verdict(flag, s)[0] == "ok"] == [
        True, False, "true", "True", "FALSE", "yes", "no", "1", "0", 1, 0,
    ]  # fmt: skip
    assert verdict(flag, 1) == verdict(flag, "1") == ("ok", True)
    size = "chroma_log_max_size"
    assert [s for s in SIZE_SPELLINGS if verdict(size, s)[0] == "ok"] == [
        "10m", "10M", "500k", "1g",
    ]  # fmt: skip
    assert verdict(size, "10M") == ("ok", "10m")
    assert verdict("chroma_backup_dir", "/srv//kb/x/") == ("ok", "/srv/kb/x")


def refusal(data: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as error:
        load_settings(data)
    return str(error.value)


def test_each_key_keeps_its_range_and_its_documented_line():
    port = "a whole number from 1 to 65535"
    assert refusal({"chroma_port": 0}) == f"chroma_port: 0 is not allowed; use {port}"
    assert refusal({"chroma_port": "+8001"}) == f"chroma_port: '+8001' is not allowed; use {port}"
    assert refusal({"chroma_lock_timeout": "+30"}) == (
        "chroma_lock_timeout: '+30' is not allowed; use whole seconds from 0 (do not wait) to 86400"
    )
    assert refusal({"chroma_log_max_files": "+3"}).startswith(
        "chroma_log_max_files: '+3' is not allowed; use a whole number of log files"
    )
    assert refusal({"chroma_port": "\u00b2"}) == f"chroma_port: '\u00b2' is not allowed; use {port}"
    # A log size needs its unit; a memory cap may be bytes.
    assert refusal({"chroma_log_max_size": 10}).startswith("chroma_log_max_size: 10 is not allowed")
    assert load_settings({"chroma_mem_limit": 10485760}).mem_limit == "10485760"
