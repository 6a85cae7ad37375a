"""What scripts/up.sh leaves the user with: `python -m plumbing.summary [pyinfra args]`.

Printed after a successful run: where Chroma answers, where its data lives,
and the commands that check drift and take a backup of this very stack. The
values come from the settings deploy.py used, never from a second copy:
group_data/all.py, then the run's ``--data KEY=VALUE`` arguments parsed as
pyinfra parses them, through :func:`declaration.settings.load_settings`.
"""

from __future__ import annotations

import runpy
import shlex
import sys
from pathlib import Path
from typing import Any

from declaration.resources import Declared
from declaration.settings import Settings, load_settings
from declaration.versions import version_line

ROOT = Path(__file__).resolve().parent.parent


def data_arguments(argv: list[str]) -> list[str]:
    """The ``KEY=VALUE`` of every ``--data`` in pyinfra's arguments, in order."""
    found = []
    for index, arg in enumerate(argv):
        if arg == "--data" and index + 1 < len(argv):
            found.append(argv[index + 1])
        elif arg.startswith("--data="):
            found.append(arg.removeprefix("--data="))
    return found


def _cli_value(value: str) -> Any:
    """pyinfra's own reading of a --data value ("8001" is 8001, "true" is True)."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value


def settings_for(pairs: list[str]) -> Settings:
    """The settings of an @local run with these --data pairs and group_data/all.py."""
    shared = runpy.run_path(str(ROOT / "group_data" / "all.py"))
    data = {key: value for key, value in shared.items() if key.startswith("chroma_")}
    for pair in pairs:
        key, _, value = pair.partition("=")
        data[key] = _cli_value(value)
    return load_settings(data)


def summary(settings: Settings, pairs: list[str]) -> str:
    """A few lines: the URL, the data dir, and how to check drift and back up."""
    url = Declared(settings, 0, 0).url
    heartbeat = f"{url}{version_line(settings.version).heartbeat_path}"
    extra = "".join(f" --data {shlex.quote(pair)}" for pair in pairs)
    python, pyinfra = ROOT / ".venv/bin/python", ROOT / ".venv/bin/pyinfra"
    token = " (send the token as X-Chroma-Token)" if settings.auth_proxy else ""
    return "\n".join(
        [
            f"chroma-deploy: Chroma {settings.version} is up and healthy",
            f"  URL:          {url}{token}; heartbeat: curl {heartbeat}",
            f"  data dir:     {settings.path(settings.data_dir)} "
            f"(compose project {settings.compose_project} in {settings.project_dir})",
            f"  check drift:  {python} {ROOT / 'drift.py'} @local{extra}",
            f"  back up:      {pyinfra} -y @local {ROOT / 'backup.py'}{extra}"
            f"  (archives in {settings.backup_dir})",
        ]
    )


def main(argv: list[str]) -> int:
    pairs = [pair for pair in data_arguments(argv) if not pair.startswith("chroma_image_source=")]
    try:
        settings = settings_for(data_arguments(argv))
    except ValueError as error:  # the deploy accepted them; say so rather than trace
        print(f"chroma-deploy: no summary ({error})", file=sys.stderr)
        return 1
    print(summary(settings, pairs), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
