"""files/chroma-lock.sh with real processes: the lock lives exactly as long as its run.

No Docker, no pyinfra: the script is run as the project lock runs it
(plumbing/lock.lock_command), from a small Python process that stands for the
run (pyinfra on @local, the SSH session's sshd over SSH).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from plumbing.lock import lock_command

# Takes the lock as a run would, passes on what the script said and its exit status.
RUN = (
    "import subprocess, sys; done = subprocess.run(sys.argv[1:], text=True, capture_output=True)"
    "; print(done.stdout, end='', flush=True); print(done.stderr, end='', file=sys.stderr)"
    "; sys.exit(done.returncode) if done.returncode else None"
)


def run_taking_the_lock(lock_dir: Path, timeout: int) -> subprocess.Popen[str]:
    """A run process that takes the lock on ``lock_dir`` and ends at once, not reaped yet."""
    project = str(lock_dir)
    command = ["sh", "-c", lock_command(project, timeout, "test run")]
    return subprocess.Popen([sys.executable, "-c", RUN, *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_run_that_ended_frees_the_lock_even_before_its_parent_reaps_it(tmp_path):
    first = run_taking_the_lock(tmp_path / "project", timeout=5)
    # Not waited for: once it ends it stays a zombie, as a run does while whoever
    # started it waits for another run (a rollout, a test starting two at once).
    deadline = time.monotonic() + 10
    while Path(f"/proc/{first.pid}/status").read_text().find("State:\tZ") < 0:
        assert time.monotonic() < deadline, "the first run did not end"
        time.sleep(0.05)
    second = run_taking_the_lock(tmp_path / "project", timeout=5)
    said, errors = second.communicate(timeout=30)
    assert second.returncode == 0, errors
    assert "locked: test run" in said, said
    first.communicate(timeout=5)


def test_a_second_run_waits_while_the_first_lives_and_names_it(tmp_path):
    project = str(tmp_path / "project")
    # A run that lives on: it holds the lock for 3 s after taking it.
    holder = subprocess.Popen(
        [sys.executable, "-c", RUN + "; import time; time.sleep(3)", "sh", "-c",
         lock_command(project, 5, "the first run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().startswith("locked: the first run")
    refused = subprocess.run(
        [sys.executable, "-c", RUN, "sh", "-c", lock_command(project, 1, "the second run")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 1 and "locked:" not in refused.stdout
    assert "the first run" in refused.stderr, refused.stderr
    holder.communicate(timeout=30)
    waited = subprocess.run(
        [sys.executable, "-c", RUN, "sh", "-c", lock_command(project, 5, "the third run")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "locked: the third run" in waited.stdout, waited
