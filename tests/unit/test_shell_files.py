"""shellcheck in the README's test command reads every shell file of the repo."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SHEBANG = re.compile(rb"^#!\s*(?:/usr/bin/env\s+)?(?:/\S*/)?(?:ba|da)?sh\b")


def shellchecked_globs() -> list[str]:
    lines = (ROOT / "scripts" / "test.sh").read_text().splitlines()
    command = next(line for line in lines if line.startswith("shellcheck "))
    return shlex.split(command)[1:]


def shell_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if SKIPPED & set(relative.parts) or not path.is_file():
            continue
        with path.open("rb") as head:
            if path.suffix == ".sh" or SHEBANG.match(head.readline()):
                found.append(relative)
    return sorted(found)


def test_every_shell_file_is_shellchecked():
    globs = shellchecked_globs()
    files = shell_files()
    assert Path("scripts/test.sh") in files  # the search finds shell files at all
    unchecked = [str(f) for f in files if not any(f.match(g) for g in globs)]
    assert unchecked == [], f"add these to scripts/test.sh's shellcheck line: {unchecked}"
