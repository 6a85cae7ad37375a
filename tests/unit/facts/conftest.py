"""Fixtures for the fact tests: an environment in which some commands are missing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def path_without(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, str]]:
    """An environment whose PATH finds every command but the named ones (no root needed)."""

    made: dict[tuple[str, ...], dict[str, str]] = {}

    def make(*hidden: str) -> dict[str, str]:
        if hidden in made:
            return made[hidden]
        farm = tmp_path_factory.mktemp("bin-without-" + "-".join(hidden))
        for directory in reversed(os.environ.get("PATH", "").split(os.pathsep)):
            if not directory or not Path(directory).is_dir():
                continue
            for entry in Path(directory).iterdir():
                if entry.name in hidden:
                    continue
                link = farm / entry.name
                link.unlink(missing_ok=True)
                link.symlink_to(entry)
        made[hidden] = {**os.environ, "PATH": str(farm)}
        return made[hidden]

    return make
