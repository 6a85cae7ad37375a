"""The cron daemon and root's crontab, read in one command."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word, to_int

SUPERVISOR_PATH = "/usr/local/sbin/chroma-deploy-cron"


# Each crontab line is printed behind a "|", so that a line of the crontab can never
# pass for one of the section markers and its leading blanks survive the transport.
# A killed cron its parent has not reaped yet (a zombie) runs nothing: not counted.
# A cron in another pid namespace (the engine's host, seen from a container) is not this
# host's: it does not read this crontab. Debian's daemon is /usr/sbin/cron, its unit cron.
def _command(log_dir: str, tools: list[str]) -> str:
    return "\n".join((
        'echo @@cron; PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v cron; true',
        "echo @@crontab_command; command -v crontab; true",
        "echo @@pids; ns=$(readlink /proc/self/ns/pid); for p in /proc/[0-9]*; do",
        '  c=; { read -r c <"$p/comm"; } 2>/dev/null; [ "$c" = cron ] || continue',
        '  s=; { read -r _ _ s _ <"$p/stat"; } 2>/dev/null; [ "$s" = Z ] && continue',
        '  n=$(readlink "$p/ns/pid" 2>/dev/null)'
        '; [ -z "$n" ] || [ "$n" = "$ns" ] && echo "${p#/proc/}"',
        "done",
        "echo @@crontab; command -v crontab >/dev/null 2>&1"
        " && crontab -l -u root 2>/dev/null | sed 's/^/|/'",
        f"echo @@log_dir; test -d {shell_word(log_dir)} && echo yes; true",
        f"echo @@tools; for f in {' '.join(shell_word(t) for t in tools)}; do",
        '  test -f "$f" || echo "$f"',
        "done",
        "echo @@enabled; test -d /run/systemd/system && systemctl is-enabled cron 2>/dev/null"
        "; true",
        "echo @@systemd; test -d /run/systemd/system && echo yes; true",
    ))  # fmt: skip


class Cron(FactBase[dict[str, Any]]):
    """The cron daemon and root's crontab. Always a dict.

    - ``cron``: the daemon's path (``/usr/sbin/cron``); None: cron is not installed.
    - ``crontab``: whether the ``crontab`` command exists (it writes the entries).
    - ``pids``: cron processes of this host (its pid namespace); empty: not running.
    - ``lines``: root's crontab, one string per line as written (``[]``: none or empty).
    - ``log_dir``: the dir ``log_dir`` (where scheduled runs log) exists.
    - ``missing_tools``: the files of ``tools`` (the host programs a run calls) not there.
    - ``systemd``: a service manager runs (``/run/systemd/system`` is a dir).
    - ``enabled``: under systemd, the cron unit starts at boot (``systemctl is-enabled``);
      False without systemd.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "cron": None,
            "crontab": False,
            "pids": [],
            "lines": [],
            "log_dir": False,
            "systemd": False,
        }

    def command(self, log_dir: str, tools: list[str]) -> str:
        return _command(log_dir, tools)

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        if "systemd" not in parts:
            raise parse_error("Cron", "the @@systemd section is missing")
        cron = next((line.strip() for line in parts.get("cron", []) if line.strip()), None)
        return {
            "cron": cron,
            "crontab": any(line.strip() for line in parts.get("crontab_command", [])),
            "pids": [
                to_int(pid, "Cron", "a cron pid") for pid in parts.get("pids", []) if pid.strip()
            ],
            "lines": [line[1:] for line in parts.get("crontab", []) if line.startswith("|")],
            "log_dir": any(line.strip() == "yes" for line in parts.get("log_dir", [])),
            "missing_tools": [line.strip() for line in parts.get("tools", []) if line.strip()],
            "systemd": any(line.strip() == "yes" for line in parts["systemd"]),
            "enabled": any(line.strip() == "enabled" for line in parts.get("enabled", [])),
        }
