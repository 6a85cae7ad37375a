"""The shipped inventory.py loads the way pyinfra loads it, and every host's data is valid.

A documented example that no longer validates would fail a user's first run. The
inventory is read by pyinfra's own CLI (`debug-inventory`: groups and merged data
per host, no host contacted), in a subprocess because pyinfra's CLI monkey-patches
the interpreter with gevent; each host's data then goes through our settings check.
"""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from declaration.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
HOST_LINE = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$", re.MULTILINE)


@pytest.fixture(scope="module")
def example_hosts() -> dict[str, dict[str, Any]]:
    """Host name -> {"groups": [...], "data": {...}} as pyinfra merged them."""
    done = subprocess.run(
        [PYINFRA, "inventory.py", "debug-inventory"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    text = done.stdout + done.stderr
    starts = list(HOST_LINE.finditer(text))
    hosts = {}
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        block = text[match.end() : following.start() if following else len(text)]
        groups = re.search(r"--> Groups: (.*)", block)
        data = block[block.index("{") : block.rindex("}") + 1]
        assert groups, block
        hosts[match["name"]] = {"groups": groups[1].split(", "), "data": json.loads(data)}
    return hosts


def test_every_example_host_has_valid_settings(example_hosts):
    assert "@local" in example_hosts
    servers = [name for name, h in example_hosts.items() if "chroma_servers" in h["groups"]]
    assert len(servers) >= 2, example_hosts
    for example_host in example_hosts.values():
        load_settings(example_host["data"])  # raises SettingsError naming the key


def test_group_data_reaches_every_host_unless_the_host_overrides_it(example_hosts):
    shared = {
        key: value
        for key, value in runpy.run_path(str(ROOT / "group_data" / "all.py")).items()
        if key.startswith("chroma_")
    }
    assert shared
    examples = runpy.run_path(str(ROOT / "inventory.py"))
    own = dict(examples["local"])
    own.update(dict(examples["chroma_servers"][0]))
    assert set(own) == set(example_hosts)
    for name, example_host in example_hosts.items():
        for key, value in shared.items():
            assert example_host["data"].get(key) == own[name].get(key, value), (name, key)


def test_ssh_hosts_check_host_keys_and_a_sudo_user_is_shown(example_hosts):
    servers = [h["data"] for h in example_hosts.values() if "chroma_servers" in h["groups"]]
    for data in servers:
        assert data.get("ssh_strict_host_key_checking") == "yes", data
        assert data.get("ssh_known_hosts_file"), data
    assert any(data.get("_sudo") and data.get("ssh_user") != "root" for data in servers)
