"""One loader: drift.py, rollout.py and the summary of scripts/up.sh read the command line
and the working dir's group_data/ as the deploy does (pyinfra itself), so a value means
the same to all of them: accepted by one, accepted by all with the same settings; refused
by one, refused by all with the same line.

The deploy's reading is pyinfra's own, taken from the real command line
(``pyinfra @local debug-inventory --json``: the host data deploy.py gets) and checked
with ``load_settings``, as ``preflight.settings_for_host`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from declaration.settings import DEFAULTS, PREFIX, Settings, SettingsError, load_settings
from plumbing import cli

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))

# Spellings fed to every key besides its example: numbers written oddly, words, a list,
# a path, a size, JSON, nothing. Most are refused by most keys; each must be refused
# (or accepted) by every entry point alike.
PROBES = ["+30", "030", "3.0", "true", "abc", '["https://app.example"]', "/srv/x", "10M", "", "{}"]


def cases() -> list[tuple[str, str, tuple[str, ...]]]:
    """(key, value, other KEY=VALUE it needs): every key's example, then every probe."""
    found = []
    for declared in fields(Settings):
        key = PREFIX + declared.name
        found.append((key, declared.metadata["example"], declared.metadata["example_with"]))
        found += [(key, probe, ()) for probe in PROBES]
    return found


CASES = cases()


def argv_of_all_cases() -> list[str]:
    """One command line holding every case's value under a name of its own (``caseN``,
    its companions ``caseN_M``): pyinfra reads each --data value by itself, whatever the
    key, so one reading of this line is every case's reading."""
    argv = []
    for number, (_key, value, needs) in enumerate(CASES):
        argv += ["--data", f"case{number}={value}"]
        for other, pair in enumerate(needs):
            argv += ["--data", f"case{number}_{other}={pair.partition('=')[2]}"]
    return argv


def verdicts(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Each case's settings as load_settings makes them of this reading, or its line."""
    found = []
    for number, (key, _value, needs) in enumerate(CASES):
        host = {key: data[f"case{number}"]}
        for other, pair in enumerate(needs):
            host[pair.partition("=")[0]] = data[f"case{number}_{other}"]
        try:
            found.append(("accepted", load_settings(host)))
        except SettingsError as error:
            found.append(("refused", str(error)))
    return found


def deploy_data(argv: list[str], cwd: Path) -> dict[str, Any]:
    """The host data pyinfra gives deploy.py for this command line, run in ``cwd``."""
    done = subprocess.run(
        [PYINFRA, "@local", "debug-inventory", "--json", *argv],
        cwd=cwd, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    (host,) = json.loads(done.stdout)
    return host["data"]


def entry_point_data(argv: list[str], cwd: Path) -> dict[str, dict[str, Any]]:
    """The @local host data drift.py, rollout.py and the summary read of the same command
    line in ``cwd`` (tests/unit/read_command_line.py, in a process of its own)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("read_command_line.py")), "data", *argv],
        cwd=cwd, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_every_key_example_and_probe_reads_the_same_through_the_deploy_and_every_entry_point(
    tmp_path,
):
    argv = argv_of_all_cases()  # in tmp_path: no group_data/ there, only the line speaks
    expected = verdicts(deploy_data(argv, tmp_path))
    for name, data in entry_point_data(argv, tmp_path).items():
        for case, deploy, entry in zip(CASES, expected, verdicts(data), strict=True):
            assert entry == deploy, f"{name} reads {case} otherwise than the deploy"
    # The examples (documented in docs/configuration.md) are accepted and mean something.
    for (key, value, needs), (verdict, settings) in zip(CASES, expected, strict=True):
        if (value, needs) == next((v, n) for k, v, n in CASES if k == key):
            assert verdict == "accepted", (key, value, settings)
            name = key.removeprefix(PREFIX)
            assert getattr(settings, name) != getattr(load_settings({}), name), key
    # Both directions are exercised: some cases are refused, some accepted.
    assert {verdict for verdict, _ in expected} == {"accepted", "refused"}


def test_the_working_dirs_group_data_and_group_data_dirs_reach_every_entry_point(tmp_path):
    """pyinfra reads group_data/ of the working dir (not of this repo), then each
    --group-data dir, under --data: so must drift.py, or it reports a compose_file
    change the deploy never makes."""
    port = DEFAULTS["chroma_port"] + 123
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(f"chroma_port = {port}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "all.py").write_text('chroma_compose_project = "kb"\nchroma_backup_keep = 3\n')
    argv = ["--group-data", str(elsewhere), "--data", "chroma_backup_keep=7"]
    deploy = deploy_data(argv, tmp_path)
    # Not this repo's group_data/all.py: only what the working dir and the line hold.
    assert deploy == {"chroma_port": port, "chroma_compose_project": "kb", "chroma_backup_keep": 7}
    for name, data in entry_point_data(argv, tmp_path).items():
        assert chroma_keys(data) == deploy, name


def chroma_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key.startswith(PREFIX)}


def test_a_pair_without_a_value_is_one_line_before_any_host():
    with pytest.raises(cli.CommandLineError) as error:
        cli.parse_data(["chroma_port"])
    assert str(error.value) == "--data 'chroma_port' is not allowed: use KEY=VALUE"
