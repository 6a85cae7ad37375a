"""What scripts/up.sh leaves the user with: `python -m plumbing.summary PYINFRA_ARGS...`.

Given the very arguments the deploy ran with (``-y @local deploy.py --data ...``),
read by pyinfra's own parser, after a run that succeeded: where Chroma answers,
where its data lives, and the commands that check drift and take a backup of this
very stack. It says nothing after a run that converged nothing (``--dry``,
``--help``, no ``-y``, a ``--debug-*`` mode), and claims only what it checked: the
heartbeat through the declared URL, read from the host as drift.py reads it. The
values come from the settings the deploy used, read by the one loader
(plumbing.cli): the working dir's group_data/, --group-data, --data.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyinfra.api import State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_host

from declaration.resources import Declared
from declaration.settings import Settings, SettingsError, load_settings
from declaration.versions import version_line
from facts.chroma import ChromaHealth, answers
from plumbing import cli

ROOT = Path(__file__).resolve().parent.parent


def load_state(command: cli.PyinfraCommand) -> State:
    """The hosts and their data as that pyinfra command read them."""
    return cli.load_state(command.inventory, command.data, command.group_data)


def group_data_dirs(command: cli.PyinfraCommand) -> list[str]:
    """Every group data dir the run read (the working dir's, then --group-data), absolute,
    so the printed commands read the same from any dir."""
    found = [Path("group_data")] if Path("group_data").is_dir() else []
    found += [Path(directory) for directory in command.group_data]
    return [str(directory.resolve()) for directory in found]


def summary(settings: Settings, running: str, command: cli.PyinfraCommand) -> str:
    """A few lines: the URL that answered, the data dir, and how to check drift and back up."""
    url = Declared(settings, 0, 0).url
    heartbeat = f"{url}{version_line(settings.version).heartbeat_path}"
    pairs = [pair for pair in command.data if not pair.startswith("chroma_image_source=")]
    extra = "".join(f" --group-data {shlex.quote(d)}" for d in group_data_dirs(command))
    extra += "".join(f" --data {shlex.quote(pair)}" for pair in pairs)
    python, pyinfra = ROOT / ".venv/bin/python", ROOT / ".venv/bin/pyinfra"
    token = " (send the token as X-Chroma-Token)" if settings.auth_proxy else ""
    return "\n".join(
        [
            f"chroma-deploy: Chroma {running} is up and healthy",
            f"  URL:          {url}{token}; heartbeat: curl {heartbeat}",
            f"  data dir:     {settings.path(settings.data_dir)} "
            f"(compose project {settings.compose_project} in {settings.project_dir})",
            f"  check drift:  {python} {ROOT / 'drift.py'} @local{extra}",
            f"  back up:      {pyinfra} -y @local {ROOT / 'backup.py'}{extra}"
            f"  (archives in {settings.backup_dir})",
        ]
    )


def read_heartbeat(host: Any, settings: Settings) -> dict[str, Any]:
    """The ChromaHealth fact through the declared URL (and token file), read on the host."""
    declared = Declared(settings, 0, 0)
    host.connect(show_errors=False, raise_exceptions=True)
    with ctx_host.use(host):
        # HealthCheck.read: with TLS on, the proxy's CA and name too.
        return host.get_fact(
            ChromaHealth, container=declared.chroma_container, **declared.health_check.read
        )


def problem_with(health: dict[str, Any], settings: Settings, url: str) -> str | None:
    """Why the heartbeat does not show the declared Chroma up (one line), or None."""
    if not answers(health):
        return f"no heartbeat at {url}: {health['error'] or 'HTTP ' + str(health['status'])}"
    running = health["image_version"]
    if running is not None and running != settings.version:
        return f"{url} answers, but Chroma {running} runs there, not {settings.version}"
    return None


def main(argv: Sequence[str]) -> int:
    command = cli.pyinfra_command(argv)
    if command is None or not command.converges:
        return 0  # help, a dry run, a debug mode: nothing converged, nothing to claim
    if command.chdir:
        os.chdir(command.chdir)  # as pyinfra did before it read anything
    try:
        state = load_state(command)
        host = next(iter(state.inventory))
        settings = load_settings(host.data)
    except (cli.CommandLineError, SettingsError) as error:
        print(f"chroma-deploy: no summary ({error})", file=sys.stderr)
        return 1
    url = Declared(settings, 0, 0).url
    try:
        problem = problem_with(read_heartbeat(host, settings), settings, url)
    except PyinfraError as error:
        problem = f"no heartbeat at {url}: {error}"
    if problem:
        print(f"chroma-deploy: {problem}", file=sys.stderr)
        return 1
    print(summary(settings, settings.version, command), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
