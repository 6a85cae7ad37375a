"""Keep a live Chroma healthy: what leaks and what runs out, per host; two repairs.

    python maintain.py INVENTORY [--data KEY=VALUE ...] [--group-data DIR ...] [--limit HOST ...]
                                 [--json] [--textfile PATH] [--apply orphans|vacuum] [--version]

Read-only unless --apply. Per host (files/chroma_maintain.py report, on the host):
orphaned segment dirs (in the data dir, not in chroma.sqlite3's ``segments``) and
their bytes; the SQLite file, its reclaimable free pages and the WAL; the free disk
beside what a vacuum, a backup and an upgrade need; the HNSW indexes' estimated
memory against chroma_mem_limit or the host's memory. SQLite is read from a private
copy, with aggregate queries only. INVENTORY, --data and group_data/ are read as the
deploy reads them (plumbing.cli). When the host lacks this chroma-deploy's host
tools, they are put in their dir (/usr/local/lib/chroma-deploy/<hash>/, as any
backup does); nothing of the project changes.

Exit codes: 0 nothing to do, 2 findings on at least one host, 1 an error (wins).
--json prints one document (schemas/maintain.schema.json); --textfile PATH also
writes the numbers as Prometheus metrics (checks/maintain_metrics.py), atomically.

--apply orphans|vacuum repairs, through one pyinfra run (``pyinfra -y INVENTORY
maintain.py --data chroma_maintain_apply=...``: deploys/maintenance.py): under the
project lock, after a backup, with Chroma stopped; then starts it and verifies
counts, ids and content against the inventory taken before. The report is printed
before and after. docs/maintenance.md says what each step does and how a killed
run is finished.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
if sys.path[:1] != [str(ROOT)]:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, str(ROOT))

EXIT_OK, EXIT_ERROR, EXIT_FINDINGS = 0, 1, 2


@dataclass
class HostReport:
    """One host: its report and findings, or the error that stopped it."""

    name: str
    project: str = ""
    report: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.report["findings"]) if self.report else []

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "findings" if self.findings else "ok"

    def as_dict(self) -> dict[str, Any]:
        report = {k: v for k, v in (self.report or {}).items() if k != "findings"}
        return {
            "status": self.status,
            "error": self.error,
            "findings": self.findings,
            "report": report or None,
        }


class UsageError(Exception):
    """Bad command-line input: one line, exit 1."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    from plumbing import cli

    parser = cli.entry_parser(
        "maintain.py",
        "Report what a live Chroma leaks and what it will run out of; repair it.",
        "exit codes: 0 nothing to do, 2 findings on at least one host, 1 error",
        lambda message: UsageError(f"maintain.py: {message}"),
        limit="only these hosts (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--textfile", type=Path, metavar="PATH",
                        help="also write Prometheus metrics to PATH, atomically")  # fmt: skip
    parser.add_argument("--apply", choices=("orphans", "vacuum"),
                        help="repair: move orphaned segment dirs aside, or vacuum SQLite "
                             "(backup first, Chroma stopped, verified after)")  # fmt: skip
    args = parser.parse_args(argv)
    problem = cli.textfile_problem(args.textfile)
    if problem:
        raise UsageError(f"maintain.py: {problem}")
    if any(pair.startswith("chroma_maintain_apply=") for pair in args.data):
        raise UsageError("maintain.py: give --apply, not --data chroma_maintain_apply")
    return args


def check_host(host: Any) -> HostReport:
    """Connect, read the report (tools put in place once if missing). Never raises."""
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.context import ctx_host

    from deploys.maintenance import report_read
    from facts.maintenance import MaintenanceReport
    from plumbing import preflight
    from plumbing.host_tools import upload_tools
    from plumbing.pyinfra_internals import run_commands_outside_operation

    result = HostReport(host.name)
    started = time.monotonic()
    try:
        host.connect(show_errors=False, raise_exceptions=True)
        with ctx_host.use(host):
            settings = preflight.settings_for_host()
            result.project = settings.compose_project
            read = report_read(settings)
            found = host.get_fact(MaintenanceReport, **read)
            if not found["tool"]:
                failed = run_commands_outside_operation(
                    host.state, host, upload_tools(settings.project_dir)
                )
                if failed:
                    raise PyinfraError(f"chroma-deploy's host tools could not be put: {failed}")
                found = host.get_fact(MaintenanceReport, **read)
            if found["error"]:
                result.error = found["error"]
            else:
                result.report = found["report"]
    except PyinfraError as error:
        result.error = str(error).removeprefix(f"{host.name}: ")
    except Exception as error:  # one host's fault is that host's error
        result.error = f"{type(error).__name__}: {error}".splitlines()[0]
    result.seconds = time.monotonic() - started
    return result


def check_all(state: Any) -> list[HostReport]:
    import gevent

    hosts = [host for host in state.inventory if state.is_host_in_limit(host)]
    greenlets = [gevent.spawn(check_host, host) for host in hosts]
    gevent.joinall(greenlets)
    return [greenlet.get() for greenlet in greenlets]


def exit_code(reports: list[HostReport]) -> int:
    if any(report.status == "error" for report in reports):
        return EXIT_ERROR
    if any(report.status == "findings" for report in reports):
        return EXIT_FINDINGS
    return EXIT_OK


def _mib(value: int) -> str:
    return f"{value / 1048576:.1f} MiB"


def render_text(reports: list[HostReport]) -> str:
    lines = []
    for report in reports:
        if report.error:
            lines.append(f"{report.name}: error: {report.error}")
            continue
        r = report.report or {}
        lines.append(
            f"{report.name}: {len(r['collections'])} collection(s), {r['records']} record(s); "
            f"data {_mib(r['data_bytes'])}, chroma.sqlite3 {_mib(r['sqlite_bytes'])} "
            f"({_mib(r['reclaimable_bytes'])} reclaimable), WAL {_mib(r['wal_bytes'])}; "
            f"orphaned segment dirs {len(r['orphans'])} ({_mib(r['orphaned_bytes'])}); "
            f"disk free {_mib(r['disk_free_bytes'])} (vacuum needs {_mib(r['vacuum_needs_bytes'])},"
            f" backup {_mib(r['backup_needs_bytes'])}, upgrade {_mib(r['upgrade_needs_bytes'])}); "
            f"index memory ~{_mib(r['index_memory_bytes'])} of {_mib(r['memory_limit_bytes'])} "
            f"({r['memory_limit_source']}); read in {report.seconds:.2f} s"
        )
        lines += [f"  {item['kind']}: {item['message']}" for item in report.findings]
    counts = {s: sum(r.status == s for r in reports) for s in ("ok", "findings", "error")}
    lines.append(
        f"{len(reports)} host(s): {counts['ok']} ok, {counts['findings']} with findings, "
        f"{counts['error']} error(s)"
    )
    return "\n".join(lines)


def render_json(reports: list[HostReport]) -> str:
    document = {
        "version": 1,
        "exit_code": exit_code(reports),
        "hosts": {report.name: report.as_dict() for report in reports},
    }
    return json.dumps(document, indent=2, sort_keys=True)


def write_metrics(path: Path, reports: list[HostReport]) -> None:
    from checks.drift_metrics import write_textfile
    from checks.maintain_metrics import HostNumbers, render

    numbers = [HostNumbers(r.name, r.project, r.report) for r in reports if r.report]
    write_textfile(path, render(numbers))


def to_repair(reports: list[HostReport], what: str) -> list[str]:
    """The hosts the repair runs on: for orphans, those with orphans or a run of it left
    unfinished (a vacuum is run wherever it is asked for: it also purges 1.x's log)."""
    if what == "vacuum":
        return [report.name for report in reports]
    return [
        report.name
        for report in reports
        if any(item["kind"] == "orphaned_segments" for item in report.findings)
        or (report.report or {}).get("unfinished") == "orphans"
    ]


def apply(args: argparse.Namespace, hosts: list[str]) -> int:
    """The repair: one pyinfra run of this file on ``hosts``, with the same data (its code)."""
    command = [sys.executable, "-m", "pyinfra", "-y", args.inventory, str(Path(__file__).resolve()),
               "--data", f"chroma_maintain_apply={args.apply}"]  # fmt: skip
    for pair in args.data:
        command += ["--data", pair]
    for directory in args.group_data:
        command += ["--group-data", directory]
    command += ["--limit", ",".join(hosts)]
    # pyinfra's lines go to stderr under --json: stdout holds the one document.
    stdout = sys.stderr if args.json else None
    return subprocess.run(command, check=False, stdin=subprocess.DEVNULL, stdout=stdout).returncode


def report_once(args: argparse.Namespace, state: Any, when: str) -> list[HostReport]:
    reports = check_all(state)
    if args.json:
        if when != "before":  # one document: the state after the repair
            print(render_json(reports))
    else:
        if when:
            print(f"-- {when}")
        print(render_text(reports))
    return reports


def main(argv: list[str]) -> int:
    from plumbing import cli

    try:
        args = parse_args(argv)
        state = cli.load_state(args.inventory, args.data, args.group_data, args.limit)
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    except cli.CommandLineError as error:
        print(f"maintain.py: {error}", file=sys.stderr)
        return EXIT_ERROR
    reports = report_once(args, state, "before" if args.apply else "")
    if args.apply:
        if exit_code(reports) == EXIT_ERROR:
            print("maintain.py: a host could not be read; nothing was repaired", file=sys.stderr)
            return EXIT_ERROR
        hosts = to_repair(reports, args.apply)
        if not hosts:
            print(f"maintain.py: no host has {args.apply} to repair; nothing was changed",
                  file=sys.stderr)  # fmt: skip
            return exit_code(reports)
        sys.stdout.flush()
        if apply(args, hosts) != 0:
            return EXIT_ERROR
        state = cli.load_state(args.inventory, args.data, args.group_data, args.limit)
        reports = report_once(args, state, "after")
    if args.textfile is not None:
        try:
            write_metrics(args.textfile, reports)
        except OSError as error:
            print(f"maintain.py: --textfile {args.textfile} was not written: {error}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_ERROR
    return exit_code(reports)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
else:
    from pyinfra.context import ctx_host

    if ctx_host.isset():  # pyinfra runs this file for each host: maintain.py --apply's run
        from deploys.maintenance import maintenance

        maintenance()
