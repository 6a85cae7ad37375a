"""`pyinfra @local /opt/chroma-deploy/deploy.py` from any dir runs OUR facts/, operations/, ...

pyinfra appends the working dir to sys.path, and a user's own pyinfra project commonly
has packages of the same names (`facts/`, `operations/`, `deploys/`). Each case runs an
entry file by its absolute path from such a dir, whose packages raise if imported, with
a value our settings refuse: the refusal line (ours, computed here by our own check)
proves our modules ran, and the marker that none of the working dir's did. Also from a
bare dir and from the repo as the README runs it. `python -m pyinfra` is rollout.py's
own command for each step (and a user's, without the console script), where the working
dir comes first on sys.path. drift.py and rollout.py themselves run as scripts, whose
dir Python puts first: they are not a case here.

The runs start together and are read one per test: about a second of CPU each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from declaration.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
OURS = ("checks", "declaration", "deploys", "facts", "fleet", "operations", "plumbing")
MARKER = "the working dir's own package was imported"
REFUSED = {"chroma_port": "nope"}

# (working dir, command): the entry file's path is absolute except from the repo.
CASES = {
    "deploy.py from a project with its own packages": ("project", [PYINFRA], "deploy.py"),
    "backup.py from a project with its own packages": ("project", [PYINFRA], "backup.py"),
    "restore.py from a project with its own packages": ("project", [PYINFRA], "restore.py"),
    "prove.py from a project with its own packages": ("project", [PYINFRA], "prove.py"),
    "maintain.py --apply's run from a project with its own packages": (
        "project",
        [PYINFRA],
        "maintain.py",
    ),
    "python -m pyinfra (rollout.py's step) from a project with its own packages": (
        "project",
        [sys.executable, "-m", "pyinfra"],
        "deploy.py",
    ),
    "deploy.py from a bare dir": ("bare", [PYINFRA], "deploy.py"),
    # As the README runs them, with that project on PYTHONPATH (as another checkout's
    # install in the same venv would be): ahead of the working dir that pyinfra appends.
    **{
        f"{entry} from the repo, a project with its own packages on PYTHONPATH": (
            "repo",
            [PYINFRA],
            entry,
        )
        for entry in ("deploy.py", "backup.py", "restore.py", "prove.py")
    },
}


def refusal_line() -> str:
    try:
        load_settings(dict(REFUSED))
    except SettingsError as error:
        return f"@local: {error}"
    raise AssertionError(f"{REFUSED} was accepted: pick a value the settings refuse")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess[str]]:
    project = tmp_path_factory.mktemp("site")
    for name in OURS:
        (project / name).mkdir()
        (project / name / "__init__.py").write_text(f"raise ImportError({MARKER!r} + ': {name}')\n")
    dirs = {"project": project, "bare": tmp_path_factory.mktemp("bare"), "repo": ROOT}
    data = [arg for key, value in REFUSED.items() for arg in ("--data", f"{key}={value}")]
    started = {}
    for case, (where, command, entry) in CASES.items():
        path = entry if where == "repo" else str(ROOT / entry)
        started[case] = subprocess.Popen(
            [*command, "@local", path, "--dry", *data],
            cwd=dirs[where],
            env={**os.environ, "PYTHONPATH": str(project)} if where == "repo" else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    done = {}
    for case, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        done[case] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


@pytest.mark.parametrize("case", CASES)
def test_the_entry_file_runs_our_modules_whatever_the_working_dir_holds(case, runs):
    run = runs[case]
    output = run.stdout + run.stderr
    assert MARKER not in output, output
    assert run.returncode == 1, output
    assert refusal_line() in output, output
