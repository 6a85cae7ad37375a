"""Report every difference between hosts and what deploy.py declares. Read-only.

    python drift.py INVENTORY [--data KEY=VALUE ...] [--group-data DIR ...] [--limit HOST ...]
                              [--json] [--no-color] [--textfile PATH] [--deploy FILE] [--version]

INVENTORY is what pyinfra accepts: @local, inventory.py, host1,host2, @ssh/...; it,
--data and group_data/ (of the working dir, the inventory's dir and each --group-data)
are read as pyinfra reads them for the deploy (plumbing.cli).
Exit codes, like `terraform plan -detailed-exitcode`: 0 every host matches,
2 at least one host drifted, 1 an error (bad input, a host unreachable, a
fact that could not be read); an error wins over drift.

It only reads facts (facts/), never runs an operation, pulls or builds. To
judge the containers it asks compose (`config --hash`, and `up --dry-run`,
which changes nothing) only when the verdict the last `up` recorded no longer
fits the file or the containers (facts.compose.VERDICT_RECORD). The
expectations are the ones deploy.py converges to:
declaration.resources.Declared built from the same settings.

--deploy FILE checks what a deploy file of your own declares instead: the
overrides of its ``chroma_stack(overrides=...)`` calls (plumbing/deploy_file.py).

--textfile PATH also writes the results as Prometheus metrics for node_exporter's
textfile collector (checks.drift_metrics), replacing PATH atomically; a
failure to write it is an error (exit 1), and stdout is unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gevent

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyinfra.api import State  # noqa: E402
from pyinfra.api.exceptions import PyinfraError  # noqa: E402
from pyinfra.context import ctx_host  # noqa: E402

from checks.compare import DriftItem, HostFacts, compare, exposed_containers  # noqa: E402
from checks.drift_metrics import HostResult, render, write_textfile  # noqa: E402
from checks.maintain_metrics import HostNumbers  # noqa: E402
from checks.maintain_metrics import render as render_maintenance  # noqa: E402
from declaration.resources import Declared  # noqa: E402
from declaration.schedule import declared_schedule  # noqa: E402
from deploys.maintenance import report_read  # noqa: E402
from facts.chroma import ChromaHealth  # noqa: E402
from facts.compose import ComposeStack, ContainerLayerData, NamedContainers  # noqa: E402
from facts.cron import Cron  # noqa: E402
from facts.datahomes import DataHomes, DataSchema, OpenedDataDir, data_elsewhere  # noqa: E402
from facts.maintenance import MaintenanceReport  # noqa: E402
from facts.project import ProjectFiles, SafetyState  # noqa: E402
from facts.schema_guard import SchemaRefusal, not_serving  # noqa: E402
from facts.tls import ProxyCertificate  # noqa: E402
from facts.tokens import ProxyClients as FactProxyClients  # noqa: E402
from facts.volumes import LegacyVolumes, legacy_volume_names  # noqa: E402
from operations import project  # noqa: E402
from operations.backup_schedule import cron_read  # noqa: E402
from operations.migrate import done_record  # noqa: E402
from plumbing import cli, host_state, preflight  # noqa: E402
from plumbing.deploy_file import stack_overrides as deploy_file_overrides  # noqa: E402
from plumbing.host_tools import TOOLS_DIR  # noqa: E402
from plumbing.tls import check_address, declared_names  # noqa: E402

EXIT_OK, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2


@dataclass
class HostReport:
    """The result for one host: ok, drift or error."""

    name: str
    items: list[DriftItem] = field(default_factory=list)
    error: str | None = None
    checked_at: float = 0.0  # Unix time the check finished (metrics only, not in --json)
    duration_seconds: float = 0.0
    tls_cert_expiry: float | None = None  # the proxy certificate's end (metrics only)
    maintenance: dict[str, Any] | None = None  # maintain.py's report (--textfile only)
    project: str = ""

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "drift" if self.items else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "items": [item.as_dict() for item in self.items],
        }


class UsageError(Exception):
    """Bad command-line input: one line, exit 1."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = cli.entry_parser(
        "drift.py",
        "Report every difference between hosts and their declared state.",
        "exit codes: 0 no drift, 2 drift on at least one host, 1 error (wins over drift)",
        lambda message: UsageError(f"drift.py: {message}"),
        limit="check only these hosts (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--no-color", action="store_true", help="plain text output")
    parser.add_argument("--textfile", type=Path, metavar="PATH",
                        help="also write Prometheus metrics to PATH (node_exporter textfile "
                             "collector), atomically")  # fmt: skip
    parser.add_argument("--deploy", type=Path, metavar="FILE",
                        help="check what this deploy file declares (its chroma_stack() "
                             "overrides) instead of deploy.py")  # fmt: skip
    args = parser.parse_args(argv)
    if args.deploy is not None and not args.deploy.is_file():
        raise UsageError(f"drift.py: --deploy {args.deploy}: no such file")
    problem = cli.textfile_problem(args.textfile)
    if problem:
        raise UsageError(f"drift.py: {problem}")
    return args


def load_state(args: argparse.Namespace) -> State:
    """The hosts and their data as the deploy reads them (plumbing.cli, pyinfra's own
    reading: the working dir's group_data/, --group-data, --data)."""
    try:
        return cli.load_state(args.inventory, args.data, args.group_data, args.limit)
    except cli.CommandLineError as error:
        raise UsageError(f"drift.py: {error}") from None


def check_host(host: Any, deploy_file: Path | None = None, maintenance: bool = False) -> HostReport:
    """Connect, read the facts, compare, and time it. Never raises: errors go into the report.

    ``maintenance`` (--textfile): also maintain.py's report, for its metrics (one command
    more; none when the host lacks this chroma-deploy's tools: drift puts nothing there).
    """
    started = time.monotonic()
    try:
        report = _check_host(host, deploy_file)
        if maintenance and not report.error:
            with ctx_host.use(host):
                settings = preflight.settings_for_host()
                found = host.get_fact(MaintenanceReport, **report_read(settings))
            report.maintenance, report.project = found["report"], settings.compose_project
    except Exception as error:  # one host's fault is that host's error, never the whole check's
        report = HostReport(host.name, error=f"{type(error).__name__}: {error}".splitlines()[0])
    report.duration_seconds = time.monotonic() - started
    report.checked_at = time.time()
    return report


def _check_host(host: Any, deploy_file: Path | None) -> HostReport:
    report = HostReport(host.name)
    try:
        host.connect(show_errors=False, raise_exceptions=True)
    except PyinfraError as error:  # a ConnectError, or a key file pyinfra could not read
        report.error = f"cannot connect: {error}"
        return report
    try:
        with ctx_host.use(host):
            if deploy_file is None:
                declared, facts = gather(host)
                report.items = compare(declared, facts)
                if facts.certificate and facts.certificate["file"]:
                    report.tls_cert_expiry = facts.certificate["file"]["not_after"]
            else:  # each stack the file declares for this host
                for overrides in deploy_file_overrides(str(deploy_file.resolve())):
                    report.items += compare(*gather(host, overrides))
    except PyinfraError as error:
        report.error = str(error).removeprefix(f"{host.name}: ")
    return report


def gather(host: Any, overrides: dict[str, Any] | None = None) -> tuple[Declared, HostFacts]:
    """Read everything drift compares: one command for all of it, more only where needed.

    A second command reads a container's own layer only when a container of the
    project does not bind-mount the data dir, and a third who holds the names
    compose would give the declared services that have no container.
    """
    settings = preflight.settings_for_host(overrides)
    clients = preflight.clients_for_host(settings)
    token = clients.host_tools if clients else None
    offsite = preflight.offsite_for_host(settings, 0, 0)
    # Where things are: the same for any owner.
    expected = Declared(settings, 0, 0, token, offsite, clients=clients)
    names = legacy_volume_names(settings.legacy_volumes, settings.adopt_volume)
    stack_read = preflight.stack_read(settings)
    health_read = preflight.health_read(expected)
    paths_fact, paths_read = project.path_states_read(expected.paths)
    # What the deploy reads too: the same list, with the same arguments.
    host_state.prefetch(preflight.state_reads(expected))
    owner = preflight.resolve_owner(settings)
    offsite = preflight.offsite_for_host(settings, owner.uid, owner.gid)
    declared = Declared(settings, owner.uid, owner.gid, token, offsite, clients=clients)
    stack = host_state.read(ComposeStack, **stack_read)
    paths = host_state.read(paths_fact, **paths_read)
    volumes = host_state.read(LegacyVolumes, names=names)
    data_dir = paths.get(declared.data_dir_paths[0])
    migrated: frozenset[str] = frozenset()
    safety = host_state.read(
        SafetyState, project_dir=settings.project_dir, data_dir=settings.data_dir
    )
    if data_dir and data_dir["has_sqlite"] and any(v["has_chroma_data"] for v in volumes):
        # Data on both sides is drift unless that volume was migrated here already.
        records = safety["records"]
        migrated = frozenset(v["name"] for v in volumes if done_record(v["name"]) in records)
    missing = preflight.names_without_container(stack, declared)
    exposed = exposed_containers(stack, declared.data_dir_paths[0], declared.line.persist_path)
    homes = host_state.read(DataHomes, data_dir=declared.data_dir_paths[0])
    elsewhere = data_elsewhere(homes, settings.compose_project, declared.line.persist_path)
    facts = HostFacts(
        data_dirs=paths,
        project_files=host_state.read(ProjectFiles, project_dir=settings.project_dir),
        stack=stack,
        health=host_state.read(ChromaHealth, **health_read),
        legacy_volumes=volumes,
        migrated_volumes=migrated,
        layer_data=host_state.read(ContainerLayerData, containers=exposed) if exposed else None,
        data_homes=homes,
        empty_sources=frozenset(
            m["source"] for m in elsewhere if m not in preflight.with_collections(elsewhere)
        ),
        named_containers=host_state.read(NamedContainers, names=missing) if missing else None,
        safety=safety,
        data_schema=host_state.read(DataSchema, data_dir=declared.data_dir_paths[0]),
        opened=host_state.read(OpenedDataDir, **preflight.opened_read(declared)),
        cron=host_state.read(Cron, **cron_read()),
        schedule=declared_schedule(settings, host.name, TOOLS_DIR),
    )
    # Why a chroma container that is not running healthy stopped: one command more, then only.
    stopped = not_serving(stack["containers"]) if declared.validates else None
    if stopped:
        facts = replace(facts, schema_refusal=host_state.read(SchemaRefusal, container=stopped))
    if declared.proxy_dir:
        facts = replace(
            facts, proxy_clients=host_state.read(FactProxyClients, proxy_dir=declared.proxy_dir)
        )
    if declared.tls_dir:
        facts = replace(
            facts,
            certificate=host.get_fact(
                ProxyCertificate,
                tls_dir=declared.tls_dir,
                address=check_address(settings),
                port=settings.port,
            ),
            certificate_names=(
                tuple(found) if (found := declared_names(settings, host.name)) else None
            ),
            now=time.time(),
        )
    return declared, facts


def check_all(
    state: State, deploy_file: Path | None = None, maintenance: bool = False
) -> list[HostReport]:
    hosts = [host for host in state.inventory if state.is_host_in_limit(host)]
    greenlets = [gevent.spawn(check_host, host, deploy_file, maintenance) for host in hosts]
    gevent.joinall(greenlets)
    return [greenlet.get() for greenlet in greenlets]


def exit_code(reports: list[HostReport]) -> int:
    if any(report.status == "error" for report in reports):
        return EXIT_ERROR
    if any(report.status == "drift" for report in reports):
        return EXIT_DRIFT
    return EXIT_OK


def render_text(reports: list[HostReport], color: bool) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lines = []
    for report in reports:
        if report.status == "ok":
            continue
        if report.error:
            lines.append(f"{paint(report.name, '1')}: {paint('error', '31')}: {report.error}")
            continue
        lines.append(f"{paint(report.name, '1')}: {len(report.items)} drift item(s)")
        width = max(len(item.kind) for item in report.items)
        for item in report.items:
            change = f"{item.expected} -> {item.actual}"
            lines.append(f"  {paint(item.kind.ljust(width), '33')}  {item.resource}: {change}")
            if item.diff:
                lines += ["    " + line for line in item.diff.rstrip("\n").splitlines()]
    counts = {
        status: sum(r.status == status for r in reports) for status in ("ok", "drift", "error")
    }
    lines.append(
        f"{len(reports)} host(s): {counts['ok']} ok, {counts['drift']} drifted, "
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


def render_metrics(reports: list[HostReport]) -> str:
    numbers = [HostNumbers(r.name, r.project, r.maintenance) for r in reports if r.maintenance]
    return render_drift_metrics(reports) + (render_maintenance(numbers) if numbers else "")


def render_drift_metrics(reports: list[HostReport]) -> str:
    return render(
        [
            HostResult(
                host=report.name,
                status=report.status,
                kinds=[item.kind for item in report.items],
                checked_at=report.checked_at,
                duration_seconds=report.duration_seconds,
                tls_cert_expiry=report.tls_cert_expiry,
            )
            for report in reports
        ]
    )


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
        state = load_state(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    reports = check_all(state, args.deploy, maintenance=args.textfile is not None)
    if args.json:
        print(render_json(reports))
    else:
        print(render_text(reports, color=not args.no_color and sys.stdout.isatty()))
    if args.textfile is not None:
        try:
            write_textfile(args.textfile, render_metrics(reports))
        except OSError as error:
            print(f"drift.py: --textfile {args.textfile} was not written: {error}", file=sys.stderr)
            return EXIT_ERROR
    return exit_code(reports)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
