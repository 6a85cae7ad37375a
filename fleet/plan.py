"""The plan, the gates and the summary of rollout.py, without a host in sight.

rollout.py runs pyinfra and reads facts; everything it decides is here, so
the unit tests can feed it recorded pyinfra output and fake step results:
which hosts go in which batch (:func:`plan_batches`), what a pyinfra run said
about each host (:func:`read_run`), when to halt (:func:`run_rollout`), and the
summary for people (:func:`render_table`) and machines (:func:`render_json`,
shaped by schemas/rollout.schema.json).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1
STEPS = ("deploy", "proof", "heartbeat")


class UsageError(Exception):
    """Bad command-line input, found before any host is touched: one line, exit 1."""


@dataclass(frozen=True)
class BatchSize:
    """``--batch``: a number of hosts, or a percentage of the hosts after the canary."""

    count: int | None = None
    percent: int | None = None

    def per_batch(self, hosts_after_canary: int) -> int:
        if self.percent is None:
            return self.count or 1
        return max(1, math.ceil(hosts_after_canary * self.percent / 100))

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count)


BATCH_ALLOWED = "use a number of hosts from 1 up (e.g. 2) or a percentage from 1% to 100% (25%)"


def parse_batch(text: str) -> BatchSize:
    """``N`` or ``P%``; anything else is a :class:`UsageError` naming --batch."""
    value = text.strip()
    number = value.removesuffix("%")
    if not number.isdigit():
        raise UsageError(f"--batch {text} is not allowed: {BATCH_ALLOWED}")
    if value.endswith("%"):
        if not 1 <= int(number) <= 100:
            raise UsageError(f"--batch {text} is not allowed: {BATCH_ALLOWED}")
        return BatchSize(percent=int(number))
    if int(number) < 1:
        raise UsageError(f"--batch {text} is not allowed: {BATCH_ALLOWED}")
    return BatchSize(count=int(number))


def check_max_failures(value: int) -> int:
    if value < 0:
        raise UsageError(
            f"--max-failures {value} is not allowed: use 0 or more (how many hosts after the "
            "canary may fail before the rollout halts)"
        )
    return value


def select_canaries(hosts: list[str], requested: list[str]) -> list[str]:
    """The canary hosts: those named (each once, in the order given), else the first host."""
    if not hosts:
        raise UsageError("the inventory has no hosts")
    unknown = [name for name in requested if name not in hosts]
    if unknown:
        raise UsageError(
            f"--canary {', '.join(unknown)} is not in the inventory: use one of {', '.join(hosts)}"
        )
    return list(dict.fromkeys(requested)) or hosts[:1]


def plan_batches(hosts: list[str], canaries: list[str], size: BatchSize) -> list[list[str]]:
    """The canaries first, then every other host in inventory order, ``size`` at a time."""
    rest = [name for name in hosts if name not in canaries]
    step = size.per_batch(len(rest))
    return [list(canaries)] + [rest[i : i + step] for i in range(0, len(rest), step)]


# What one step found on one host. ``ran`` False: the step never reached the host
# (pyinfra stopped for another host before anything ran); it may run again.
@dataclass(frozen=True)
class StepResult:
    ok: bool
    changed: bool = False
    reason: str | None = None
    ran: bool = True
    detail: str | None = None  # the heartbeat's running version
    operation: str | None = None  # the pyinfra operation that failed, when one did


NOT_RUN = StepResult(ok=False, ran=False)
# A step: the hosts of one batch in, one result per host out.
Step = Callable[[list[str]], dict[str, StepResult]]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HOST_LINE = re.compile(r"^\s*\[(?P<host>[^\]]+)\] (?P<text>.*)$")
_CLI_ERROR = "--> pyinfra error: "
# An exception pyinfra did not expect stops the whole run (after a traceback): its last line
# says why (`No such private key file: ...`, `Unable to establish SFTP connection...`), and
# gevent's line before it names the host whose greenlet raised it.
_CRASH = re.compile(r"^--> pyinfra error in \S+ line \d+: (?P<reason>.+?)\s*$")
_CRASHED_HOST = re.compile(
    r"<Greenlet at 0x[0-9a-f]+: .*\bHost\((?P<host>[^()]+)\).*> failed with "
)
_OPERATION = re.compile(r"^--> Starting (?:nested )?operation: (?P<name>.*?)\s*$")
# Lines under a host's prefix that say how a step went, not why it failed: pyinfra's own,
# and docker compose's progress ("Container rollout-chroma-1 Waiting").
_STATUS_LINE = re.compile(
    r"^(Success|No changes|Connected|Ready: .*|Loaded fact .*|Skipped.*"
    r"|Error: executed \d+ commands.*|Error in nested operation"
    r"|(Container|Network|Volume|Image) \S+ [A-Z][a-z]+)$"
)


def read_run(returncode: int, stdout: str, stderr: str, hosts: list[str]) -> dict[str, StepResult]:
    """Each host's result from one ``pyinfra -y --json INVENTORY FILE --limit ...`` run.

    With every host done, stdout holds pyinfra's JSON results: a host failed
    when it is in ``failed_hosts``, changed when any operation counts it in
    ``success``. A refusal while pyinfra prepared (``--> pyinfra error: HOST:
    why``) stops the run before any host changes: that host failed with the
    refusal as its reason, the others were not reached. Otherwise the reason
    of a failed host is the last line pyinfra printed under its ``[name]``
    that is not a status or progress line (a refusal during the run, the
    proof's verdict, a command's last error line, a connect error), with the
    operation that was running; a command that failed saying nothing (the
    connection lost, say) leaves pyinfra's ``Error: executed N commands``.
    An exception that stopped pyinfra itself (a missing key file, no SFTP on
    the host) fails the host it names with pyinfra's own last line; the others
    never ran when it stopped while connecting.
    """
    lines = _ANSI.sub("", stderr).splitlines()
    last_said: dict[str, tuple[str | None, str]] = {}  # host -> (operation, line)
    silent_error: dict[str, tuple[str | None, str]] = {}
    succeeded: set[str] = set()  # changed, as pyinfra printed it (no JSON after a crash)
    crashed: tuple[str, str | None] | None = None  # (host, operation)
    operation = None
    for line in lines:
        started = _OPERATION.match(line)
        if started:
            operation = started["name"]
            continue
        greenlet = _CRASHED_HOST.search(line)
        if greenlet and greenlet["host"] in hosts and crashed is None:
            crashed = (greenlet["host"], operation)
            continue
        match = _HOST_LINE.match(line)
        if not match or match["host"] not in hosts:
            continue
        text = match["text"].strip()
        if text == "Success":
            succeeded.add(match["host"])
        if text.startswith("Error: executed"):
            silent_error[match["host"]] = (operation, f"failed with no message (pyinfra: {text})")
        elif not _STATUS_LINE.match(text):
            last_said[match["host"]] = (operation, text)
    cli_error = next(
        (line.removeprefix(_CLI_ERROR).strip() for line in lines if line.startswith(_CLI_ERROR)),
        None,
    )
    crash = next((m["reason"] for m in map(_CRASH.match, lines) if m), None)

    def failure(name: str, changed: bool = False) -> StepResult:
        found = last_said.get(name) or silent_error.get(name)
        if found is None:
            reason = cli_error or crash or "pyinfra failed"
            return StepResult(ok=False, changed=changed, reason=reason)
        return StepResult(ok=False, changed=changed, reason=found[1], operation=found[0])

    results = _json_results(stdout)
    if results is not None and (returncode == 0 or results.get("failed_hosts")):
        failed = set(results.get("failed_hosts", []))
        changed = {name for op in results.get("operations", []) for name in op.get("success", [])}
        return {
            name: failure(name, name in changed)
            if name in failed
            else StepResult(ok=True, changed=name in changed)
            for name in hosts
        }
    refused = next((name for name in hosts if (cli_error or "").startswith(f"{name}: ")), None)
    if cli_error and refused is not None:
        reason = cli_error.removeprefix(f"{refused}: ")
        return {
            name: StepResult(ok=False, reason=reason) if name == refused else NOT_RUN
            for name in hosts
        }
    if crash and crashed is not None:
        host, at = crashed
        return {
            name: StepResult(ok=False, changed=name in succeeded, reason=crash, operation=at)
            if name == host
            else NOT_RUN
            if at is None  # stopped while connecting: nothing ran anywhere
            else StepResult(
                ok=False,
                changed=name in succeeded,
                reason=f"not finished: pyinfra stopped the run when {host} failed",
                operation=at,
            )
            for name in hosts
        }
    # No results: every host of the run failed ("No hosts remaining!"), or pyinfra itself did.
    return {name: failure(name) for name in hosts}


def _json_results(stdout: str) -> dict[str, Any] | None:
    try:
        results = json.loads(stdout)["results"]
    except (ValueError, KeyError, TypeError):
        return None
    return results if isinstance(results, dict) else None


def heartbeat_verdict(health: dict[str, Any], url: str, version: str) -> StepResult:
    """The gate's heartbeat from a ChromaHealth fact: a 200 with a heartbeat, and no other
    Chroma version running than the declared one (unknown, when the fact found no container,
    does not fail it: the proof just ran against that server)."""
    running = health["image_version"]
    if health["status"] != 200 or not health["heartbeat"]:
        problem = health["error"] or f"HTTP {health['status']}"
        return StepResult(ok=False, detail=running, reason=f"no heartbeat at {url}: {problem}")
    if running is not None and running != version:
        return StepResult(
            ok=False, detail=running,
            reason=f"the heartbeat answers, but Chroma {running} runs, not {version}",
        )  # fmt: skip
    return StepResult(ok=True, detail=running)


@dataclass
class HostReport:
    """One host of the rollout: what each step found, and why it failed if it did."""

    name: str
    batch: int  # 1 is the canary batch
    canary: bool
    deploy: str | None = None  # "changed", "unchanged" or "failed"; None: never deployed
    proof: str | None = None  # "pass" or "fail"
    heartbeat: str | None = None  # "ok" or "fail"
    version: str | None = None  # the Chroma version the heartbeat saw running
    changed: bool = False  # pyinfra counted a change here (also in a deploy that failed)
    failed_step: str | None = None
    reason: str | None = None
    operation: str | None = None  # the pyinfra operation that failed, when one did

    @property
    def status(self) -> str:
        """failed, changed, unchanged or untouched (the deploy never ran here)."""
        if self.failed_step:
            return "failed"
        return self.deploy or "untouched"

    @property
    def proven(self) -> bool:
        return self.proof == "pass" and self.heartbeat == "ok"

    def fail(self, step: str, result: StepResult) -> None:
        self.failed_step = step
        self.reason = result.reason or f"the {step} failed (pyinfra printed no reason)"
        self.operation = result.operation
        if step == "deploy":
            self.deploy = "failed"
        elif step == "proof":
            self.proof = "fail"
        else:
            self.heartbeat = "fail"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch": self.batch,
            "canary": self.canary,
            "status": self.status,
            "changed": self.changed,
            "proven": self.proven,
            "deploy": self.deploy,
            "proof": self.proof,
            "heartbeat": self.heartbeat,
            "version": self.version,
            "failed_step": self.failed_step,
            "operation": self.operation,
            "reason": self.reason,
        }


@dataclass
class Rollout:
    """The whole run: the plan, every host's report, and where it halted."""

    batches: list[list[str]]
    max_failures: int
    hosts: dict[str, HostReport] = field(default_factory=dict)
    halted_at: str | None = None  # the host whose failure halted the rollout
    seconds: list[float] = field(default_factory=list)  # per batch that ran

    @classmethod
    def planned(cls, batches: list[list[str]], max_failures: int) -> Rollout:
        rollout = cls(batches, max_failures)
        for number, batch in enumerate(batches, start=1):
            for name in batch:
                rollout.hosts[name] = HostReport(name, number, canary=number == 1)
        return rollout

    def failed(self) -> list[HostReport]:
        return [report for report in self.hosts.values() if report.failed_step]

    def names(self, test: Callable[[HostReport], bool]) -> list[str]:
        return [report.name for report in self.hosts.values() if test(report)]

    def must_halt(self) -> bool:
        """A failed canary halts; after it, the first failure beyond max_failures does."""
        failed = self.failed()
        return any(report.canary for report in failed) or len(failed) > self.max_failures

    def halting_host(self) -> HostReport:
        """The failure that halts: the first failed canary, else failure max_failures + 1."""
        failed = self.failed()
        canaries = [report for report in failed if report.canary]
        return canaries[0] if canaries else failed[min(self.max_failures, len(failed) - 1)]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed() else EXIT_OK


def describe_plan(batches: list[list[str]], size: BatchSize, max_failures: int) -> str:
    """The first line a rollout prints: who goes first, how the rest follow, when it halts."""
    hosts = sum(len(batch) for batch in batches)
    rest = (
        f"then {len(batches) - 1} batch(es) of up to {size.per_batch(hosts - len(batches[0]))}"
        if len(batches) > 1
        else "no other host"
    )
    halts = (
        "halts at the first failure"
        if max_failures == 0
        else f"halts on a failed canary, or when more than {max_failures} host(s) fail"
    )
    return f"rollout of {hosts} host(s): canary {', '.join(batches[0])}, {rest}; {halts}"


def run_rollout(
    batches: list[list[str]],
    max_failures: int,
    deploy: Step,
    prove: Step,
    heartbeat: Step,
    progress: Callable[[str], None] = lambda line: None,
    clock: Callable[[], float] = lambda: 0.0,
) -> Rollout:
    """Each batch in turn: deploy, then the proof, then a heartbeat; halt when a gate says so.

    Within a batch, hosts whose deploy failed get no proof and hosts whose proof
    failed get no heartbeat; the batch's gates finish for the others (they were
    touched already), then the rollout halts before the next batch. A host a
    step did not reach (pyinfra stopped for another host's refusal before
    anything ran) gets that step again, unless the rollout must halt.
    """
    rollout = Rollout.planned(batches, max_failures)
    for number, batch in enumerate(batches, start=1):
        started = clock()
        label = "canary" if number == 1 else f"batch {number}/{len(batches)}"
        passed = list(batch)
        for step_name, step in zip(STEPS, (deploy, prove, heartbeat), strict=True):
            passed = _run_step(rollout, step_name, step, passed, f"[{label}]", progress, clock)
        rollout.seconds.append(round(clock() - started, 1))
        if rollout.must_halt():
            rollout.halted_at = rollout.halting_host().name
            progress(f"rollout halted at {rollout.halted_at}: no further host is touched")
            break
    return rollout


def _run_step(
    rollout: Rollout,
    step_name: str,
    step: Step,
    hosts: list[str],
    label: str,
    progress: Callable[[str], None],
    clock: Callable[[], float],
) -> list[str]:
    """Run one step on ``hosts`` (again on those it did not reach); the hosts that passed."""
    passed: list[str] = []
    pending = list(hosts)
    while pending:
        started = clock()
        results = step(pending)
        seconds = clock() - started
        not_reached = [name for name in pending if not results.get(name, NOT_RUN).ran]
        if not_reached == pending:  # nothing ran at all: no reason to expect another try to
            results = {name: StepResult(ok=False, reason=f"the {step_name} did not run")
                       for name in pending}  # fmt: skip
            not_reached = []
        for name in pending:
            if name in not_reached:
                continue
            report = rollout.hosts[name]
            _record(report, step_name, results[name])
            if results[name].ok:
                passed.append(name)
            progress(f"{label} {name}: {step_name} {_outcome(report, step_name)} ({seconds:.1f} s)")
        if not_reached and rollout.must_halt():
            for name in not_reached:
                progress(f"{label} {name}: {step_name} not run: the rollout halts")
            break
        pending = not_reached
    return passed


def _record(report: HostReport, step_name: str, result: StepResult) -> None:
    if step_name == "deploy":
        report.changed = result.changed
        if result.ok:
            report.deploy = "changed" if result.changed else "unchanged"
    elif step_name == "proof" and result.ok:
        report.proof = "pass"
    elif step_name == "heartbeat":
        report.version = result.detail
        if result.ok:
            report.heartbeat = "ok"
    if not result.ok:
        report.fail(step_name, result)


def _outcome(report: HostReport, step_name: str) -> str:
    if report.failed_step == step_name:
        return f"FAILED: {report.reason}"
    value = getattr(report, step_name)
    return f"{value} ({report.version})" if step_name == "heartbeat" and report.version else value


def summary_lists(rollout: Rollout) -> dict[str, list[str]]:
    return {
        "changed": rollout.names(lambda r: r.changed),
        "unchanged": rollout.names(lambda r: r.status == "unchanged"),
        "proven": rollout.names(lambda r: r.proven),
        "failed": rollout.names(lambda r: r.status == "failed"),
        "untouched": rollout.names(lambda r: r.status == "untouched"),
    }


def render_json(rollout: Rollout) -> str:
    """One document for machines; its shape is schemas/rollout.schema.json."""
    halted = rollout.hosts[rollout.halted_at] if rollout.halted_at else None
    # Batches after a halt never ran: no time.
    seconds = [*rollout.seconds, *[None] * (len(rollout.batches) - len(rollout.seconds))]
    document = {
        "version": 1,
        "exit_code": rollout.exit_code,
        "max_failures": rollout.max_failures,
        "halted": None if halted is None else {
            "host": halted.name, "step": halted.failed_step,
            "operation": halted.operation, "reason": halted.reason,
        },
        "batches": [
            {"number": number, "canary": number == 1, "hosts": batch,
             "seconds": seconds[number - 1]}
            for number, batch in enumerate(rollout.batches, start=1)
        ],
        "hosts": [report.as_dict() for report in rollout.hosts.values()],
        "summary": summary_lists(rollout),
    }  # fmt: skip
    return json.dumps(document, indent=2)


def _result(report: HostReport) -> str:
    if report.failed_step:
        where = f" ({report.operation})" if report.operation else ""
        return f"FAILED at {report.failed_step}{where}: {report.reason}"
    if report.status == "untouched":
        return "never touched"
    return "proven" if report.proven else report.status


def render_table(rollout: Rollout) -> str:
    """The summary for people: one row per host in rollout order, then who is where."""
    rows = [("HOST", "BATCH", "DEPLOY", "PROOF", "HEARTBEAT")]
    results = ["RESULT"]
    for report in rollout.hosts.values():
        heartbeat = report.heartbeat or "-"
        if report.version:
            heartbeat += f" ({report.version})"
        batch = "canary" if report.canary else str(report.batch)
        rows.append((report.name, batch, report.deploy or "-", report.proof or "-", heartbeat))
        results.append(_result(report))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        + "  "
        + result
        for row, result in zip(rows, results, strict=True)
    ]
    lines.append("")
    lists = summary_lists(rollout)
    titles = {"changed": "changed", "unchanged": "unchanged", "proven": "proven",
              "failed": "failed", "untouched": "never touched"}  # fmt: skip
    lines += [f"{title + ':':15}{', '.join(lists[key]) or '-'}" for key, title in titles.items()]
    if rollout.halted_at:
        halted = rollout.hosts[rollout.halted_at]
        lines.append(
            f"halted at {halted.name} ({halted.failed_step}); fix it and run the same command "
            "again: converged hosts are a no-op"
        )
    return "\n".join(line.rstrip() for line in lines)
