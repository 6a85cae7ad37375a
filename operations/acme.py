"""chroma_tls=acme: the host obtains its certificate with lego, and renews it on a schedule.

The deploy asks for a certificate only when the host has none for the declared names
from the declared CA, or the one it has ended: renewing one that is merely due is the
schedule's job (root's crontab, twice a day), so a second run changes nothing even with
a short-lived certificate, and the deploy and cron never race for the same renewal.
drift reports a certificate within ``chroma_tls_renew_days`` of its end (the schedule
did not renew it: its log says why).
"""

from __future__ import annotations

import shlex
import time

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.facts.server import Which
from pyinfra.operations import apt, server

from declaration.acme import PROGRAM, PROGRAM_PATH, AcmeTarget
from declaration.schedule import CRON_USER, LOG_DIR, marker
from facts.acme import AcmeCertificate
from facts.cron import Cron
from operations.backup_schedule import _remove, cron_read
from operations.host_failure import fail_host, refusing
from plumbing import host_state
from plumbing.report import step


def _read(target: AcmeTarget) -> dict:
    return host.get_fact(
        AcmeCertificate,
        acme_dir=target.acme_dir,
        tls_dir=target.tls_dir,
        program=PROGRAM_PATH,
        log_dir=LOG_DIR,
    )


def _why_new(target: AcmeTarget, found: dict) -> str | None:
    """Why the host needs a new certificate now, or None: the one it has will do."""
    file = found["file"]
    if file is None:
        return f"none in {target.tls_dir}"
    if sorted(file["names"]) != sorted(target.domains):
        return f"the one there names {', '.join(file['names']) or 'nothing'}"
    if found["issued"] != target.issued:
        return "the one there is not from this CA"
    if found["issued_fingerprint"] != file["fingerprint"]:
        return "the one there is not the one lego installed"
    if file["not_after"] <= time.time():
        ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(file["not_after"]))
        return f"the one there ended at {ended}"
    return None


@operation()
def acme_certificate(target: AcmeTarget):
    """The proxy's certificate from the ACME CA, in ``target.tls_dir``; lego installed first.

    Debian's ``lego`` (pyinfra's apt operation) when missing, and files/chroma-acme.sh,
    which runs it (HTTP-01) and installs the certificate, key, issuer (``ca.pem``, the
    anchor of the host's own checks) and name where the proxy reads them, then reloads
    a running proxy. A failure is one line: lego's last, and what must be reachable.

    + target: the host's ACME declaration (declaration/acme.py)
    """
    found = _read(target)
    if not found["lego"]:
        if not host.get_fact(Which, command="apt-get"):
            yield fail_host(
                "chroma_tls: acme needs lego on this host, and it has no apt-get to install it "
                "with; install lego (4.9 or newer), then run again"
            )
            return
        yield step("installing Debian's lego (chroma_tls=acme)")
        yield from apt.packages._inner(packages=["lego"], update=True)
    if not found["program"]:
        yield from upload_program()
    reason = _why_new(target, found)
    if reason is None:
        ends = time.strftime("%Y-%m-%d", time.gmtime(found["file"]["not_after"]))
        host.noop(f"{target.tls_dir}/cert.pem is for {' '.join(target.domains)}, ends {ends}")
        return
    yield step(
        f"obtaining a certificate for {' '.join(target.domains)} from {target.directory} "
        f"(lego, HTTP-01 on port {target.http_port}): {reason}"
    )
    yield refusing(target.command("issue"), show_output=True)


def upload_program() -> list:
    """files/chroma-acme.sh to its content-named path, whole (written aside, renamed)."""
    part = f"{PROGRAM_PATH}.{host.name.lstrip('@')}.part"
    return [
        shlex.join(["mkdir", "-p", PROGRAM_PATH.rsplit("/", 1)[0]]),
        FileUploadCommand(str(PROGRAM), part),
        f"chmod 0755 {shlex.quote(part)} && mv -f {shlex.quote(part)} {shlex.quote(PROGRAM_PATH)}",
    ]


@operation()
def acme_renewal_schedule(project_dir: str, target: AcmeTarget | None):
    """Root's crontab renews this project's certificate (twice a day); removed when None.

    Written by pyinfra's crontab operation under a marker naming the project dir, as the
    scheduled backup is (operations/backup_schedule.py). With chroma_tls no longer acme the
    entry is taken out (exactly its two lines): it would install certificates over the
    declared ones. Its log: /var/log/chroma-deploy/<compose project>-acme.log.

    + project_dir: names the entry
    + target: the host's ACME declaration; None: no entry
    """
    name = f"chroma-deploy acme {project_dir}"
    if target is None:
        lines = host_state.read(Cron, **cron_read())["lines"]
        ours = marker(name)
        if ours not in [line.strip() for line in lines]:
            host.noop(f"no ACME renewal of {project_dir} in root's crontab")
            return
        index = [line.strip() for line in lines].index(ours)
        entry = lines[index : index + 2]
        # The line below the marker only if it runs our program (never another's line).
        yield _remove(entry if PROGRAM.name in entry[-1] else entry[:1])
        return
    found = _read(target)
    if not found["log_dir"]:
        yield f"mkdir -p -m 0750 {LOG_DIR}"
    if not found["program"]:
        yield from upload_program()
    yield from server.crontab._inner(
        command=target.cron_command,
        user=CRON_USER,
        cron_name=target.cron_name,
        minute=target.cron_minute,
        hour=target.cron_hour,
    )
