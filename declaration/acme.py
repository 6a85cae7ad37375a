"""chroma_tls=acme: what the host gets to obtain and renew the proxy's certificate itself.

The certificate comes from the ACME CA to the host, never through the control machine:
files/chroma-acme.sh runs Debian's ``lego`` there, by HTTP-01 with lego's own short-lived
server on ``chroma_acme_http_port`` (80: the port the CA asks), which the proxy never
listens on, so nothing is stopped or changed to answer a challenge (TLS-ALPN-01 would
need port 443, the port a TLS proxy is most often published on). It installs the
certificate into the dir the proxy mounts and reloads nginx. The deploy runs it when the
host has no certificate for the declared names from the declared CA (or one that ended);
root's crontab runs it twice a day to renew within ``chroma_tls_renew_days``.

The program reads ``<secrets>/acme/acme.conf`` (KEY=VALUE lines, read and never sourced),
so the cron line holds only paths; lego keeps its account and certificates beside it,
in a dir per directory URL. All of it is root's (0700): cron runs the renewal as root.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from declaration.resources import Directory, File
from declaration.schedule import CRON_PATH, LOG_DIR, auto_minute

PROGRAM = Path(__file__).resolve().parent.parent / "files" / "chroma-acme.sh"
# Named by its content: a host keeps one copy per version, and the cron line follows it.
PROGRAM_PATH = (
    f"/usr/local/lib/chroma-deploy/acme-{hashlib.sha256(PROGRAM.read_bytes()).hexdigest()[:12]}"
    "/chroma-acme.sh"
)


@dataclass(frozen=True)
class AcmeTarget:
    """One host's ACME certificate as declared: where, for which names, from which CA."""

    project_dir: str
    compose_project: str
    compose_file: str
    secrets_dir: str
    tls_dir: str
    directory: str
    email: str
    domains: tuple[str, ...]
    http_port: int
    renew_days: int
    uid: int
    gid: int
    host_name: str
    # The PEM bundle the ACME server's own HTTPS certificate verifies with; None: the
    # host's trust store (Let's Encrypt).
    ca_bundle: str | None = field(default=None, repr=False)

    @property
    def acme_dir(self) -> str:
        return f"{self.secrets_dir}/acme"

    @property
    def config(self) -> str:
        """acme.conf: what files/chroma-acme.sh reads."""
        lines = {
            "directory": self.directory,
            "email": self.email,
            "domains": " ".join(self.domains),
            "http_port": str(self.http_port),
            "renew_days": str(self.renew_days),
            "tls_dir": self.tls_dir,
            "project_dir": self.project_dir,
            "compose_file": self.compose_file,
            "uid": str(self.uid),
            "gid": str(self.gid),
            "ca_file": f"{self.acme_dir}/acme-ca.pem" if self.ca_bundle else "",
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    @property
    def issued(self) -> str:
        """What the program writes to ``<acme>/issued`` once it installed a certificate from
        this CA for these names: the deploy asks for a new one when it differs."""
        return f"{self.directory} {' '.join(self.domains)}"

    @property
    def resources(self) -> tuple[Directory | File, ...]:
        """The proxy's TLS dir (the program fills it) and the program's own dir and files."""
        found: list[Directory | File] = [
            Directory(self.tls_dir, self.uid, self.gid, "700"),
            Directory(self.acme_dir, 0, 0, "700"),
            File(f"{self.acme_dir}/acme.conf", 0, 0, "600", self.config),
        ]
        if self.ca_bundle:
            found.append(File(f"{self.acme_dir}/acme-ca.pem", 0, 0, "600", self.ca_bundle))
        return tuple(found)

    def command(self, mode: str) -> str:
        """The program run as ``mode`` (issue or renew) on this project, as one quoted command
        (by bash: a copy that lost its mode still runs)."""
        return shlex.join(["bash", PROGRAM_PATH, mode, self.acme_dir])

    @property
    def cron_name(self) -> str:
        return f"chroma-deploy acme {self.project_dir}"

    @property
    def cron_minute(self) -> str:
        """A minute of its own per host (as the backup's "auto"), twice a day."""
        return str(auto_minute(self.host_name))

    cron_hour = "4,16"

    @property
    def cron_command(self) -> str:
        """What cron runs: the renewal, with the PATH docker needs, logged."""
        log = f"{LOG_DIR}/{self.compose_project}-acme.log"
        return f"PATH={CRON_PATH} {self.command('renew')} >>{shlex.quote(log)} 2>&1"
