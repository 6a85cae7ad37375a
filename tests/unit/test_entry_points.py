"""Every entry point answers --version with pyproject.toml's version (one source)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = (
    "deploy.py",
    "drift.py",
    "backup.py",
    "restore.py",
    "prove.py",
    "rollout.py",
    "maintain.py",
)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_version_is_the_projects_with_pyinfras(entry, tmp_path):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    pyinfra = importlib.metadata.version("pyinfra")
    done = subprocess.run(
        [sys.executable, str(ROOT / entry), "--version"],
        cwd=tmp_path,  # from any dir
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"chroma-deploy {project} (pyinfra {pyinfra})\n"


def test_drift_deploy_file_that_does_not_exist_is_one_line_before_any_host():
    import drift

    with pytest.raises(
        drift.UsageError, match=r"^drift.py: --deploy /nonexistent/site.py: no such file$"
    ):
        drift.parse_args(["@local", "--deploy", "/nonexistent/site.py"])
