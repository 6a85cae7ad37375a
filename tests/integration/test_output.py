"""What a run tells the user at pyinfra's default verbosity (no -v)."""

from __future__ import annotations

import click
import pytest
from conftest import base_data, converge, run_deploy, write_records

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def shown(deploy_file: str, data: dict) -> str:
    """Run an action without -v and return what it logged (pyinfra logs to stderr)."""
    result = run_deploy(data, deploy_file=deploy_file, timeout=600)
    assert result.returncode == 0, result.output
    return click.unstyle(result.stderr)


def test_long_steps_and_action_results_show_without_verbose_flags(project, tmp_path):
    project_dir, name = project
    backups = tmp_path / "backups"
    data = base_data(project_dir, name, chroma_backup_dir=str(backups), chroma_backup_keep=1)
    first = click.unstyle(converge(data).stderr)
    # A long step says what it does as it starts, at default verbosity.
    assert f"[@local] starting {name}, waiting up to 120 s for healthy" in first
    write_records(data["chroma_port"], ("notes",), per_collection=5)

    first = shown("backup.py", data)
    (archive,) = sorted(backups.glob(f"{name}-*.tar.gz"))
    assert f"[@local] backup written: {archive}" in first

    second = shown("backup.py", data)
    assert f"[@local] pruned: {archive}" in second
    (kept,) = sorted(backups.glob(f"{name}-*.tar.gz"))
    assert f"[@local] backup written: {kept}" in second

    assert "[@local] persistence proof: pass" in shown("prove.py", data)
    # With -vvv pyinfra prints the output itself: the line comes once, not twice.
    verbose = run_deploy(data, "-vvv", deploy_file="prove.py", timeout=600)
    assert verbose.returncode == 0, verbose.output
    lines = click.unstyle(verbose.stderr).splitlines()
    assert [line.strip() for line in lines].count("[@local] persistence proof: pass") == 1

    restored = shown("restore.py", dict(data, chroma_restore_archive=str(kept)))
    assert f"[@local] the data before the restore is in {project_dir}/chroma_data." in restored
    assert f"[@local] restored {kept}: verified against its manifest" in restored
