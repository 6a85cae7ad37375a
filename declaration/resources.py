"""The state a host should be in, derived once from its settings, owner and token.

Every path the deploy converges is a :class:`Directory` or a :class:`File` in
:attr:`Declared.paths`; the ``.gitignore`` block, the compose file and the
stack are the other resources (:attr:`Declared.resources` lists them all).
deploy.py turns each resource into an operation and drift.py compares the facts
with the very same objects: one declaration, no second list of expectations
that could disagree (tests/unit/test_resources.py checks that every kind of
resource has both an operation and a comparison).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from declaration.clients import ProxyClients
from declaration.gitignore import gitignore_lines
from declaration.render import published_port, render_compose, server_environment
from declaration.settings import Settings
from declaration.targets import CheckServer, DataTarget, HealthCheck, StackTarget, stack_target
from declaration.versions import MIGRATION_MODE, VersionLine, version_line

if TYPE_CHECKING:
    from declaration.acme import AcmeTarget
    from declaration.offsite import OffsiteTarget

# The compose file's mode: the owner writes it, the group may read it, others nothing.
COMPOSE_FILE_MODE = "640"
TOKEN_FILE_PREFIX = "CHROMA_AUTH_TOKEN="  # noqa: S105 (the variable name, not a token)


def token_file_content(token: str) -> str:
    """What the host's token file holds: one env-style line, read by the proxy."""
    return f"{TOKEN_FILE_PREFIX}{token}\n"


@dataclass(frozen=True)
class TlsFiles:
    """What the host's proxy gets with TLS on (made on the control machine, plumbing/tls.py):
    the certificate (PEM, with its chain), its key (PEM, never shown), the trust anchor the
    host's own checks verify it with, and the name they ask for."""

    cert: str
    key: str = field(repr=False)
    ca: str
    name: str


@dataclass(frozen=True)
class Directory:
    """A dir with its owner, group and mode, optionally with an empty ``.gitkeep``."""

    path: str
    uid: int
    gid: int
    mode: str
    gitkeep: bool = False
    # A container writes into it: a wrong owner is repaired for everything inside.
    recursive_owner: bool = False


@dataclass(frozen=True)
class File:
    """A file with its owner, group and mode, and its content when the deploy manages it.

    ``content`` None: the file only has to exist (created empty), a container
    writes it. ``secret``: compared by digest only, never shown, uploaded as a file.
    ``feeds``: compose services that bind-mount the file itself; a file created
    anew reaches their running containers only when they start again.
    """

    path: str
    uid: int
    gid: int
    mode: str
    content: str | None = field(default=None, repr=False)
    secret: bool = False
    feeds: tuple[str, ...] = ()

    @property
    def sha256(self) -> str | None:
        if self.content is None:
            return None
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(frozen=True)
class GitignoreBlock:
    """Our lines in the project's ``.gitignore``: all present, each ignore before its ``!``."""

    path: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ComposeFile:
    """The compose file, exactly as rendered from the template."""

    path: str
    content: str
    uid: int
    gid: int
    mode: str = COMPOSE_FILE_MODE


@dataclass(frozen=True)
class Stack:
    """The running stack: its services up, healthy, on the declared config, image and mounts."""

    project: str
    services: tuple[str, ...]
    published_service: str
    image_ref: str
    url: str


Resource = Directory | File | GitignoreBlock | ComposeFile | Stack


def stat_type(resource: Directory | File) -> str:
    """What ``stat -c %F`` must say of the path: "directory" or "regular file"."""
    return "directory" if isinstance(resource, Directory) else "regular file"


def has_declared_type(resource: Directory | File, found_type: str) -> bool:
    """The path is of the declared kind; stat says "regular empty file" for an empty one."""
    return found_type.replace(" empty", "") == stat_type(resource)


@dataclass(frozen=True)
class Declared:
    """Everything deploy.py declares for one host."""

    settings: Settings
    uid: int
    gid: int
    # The auth proxy's token, read on the control machine; None without the proxy.
    token: str | None = field(default=None, repr=False)
    # The off-host backup repository's files (declaration/offsite.py); None without one.
    offsite: OffsiteTarget | None = field(default=None, repr=False)
    # The proxy's certificate and key (plumbing/tls.py), made on the control machine;
    # None with chroma_tls=off, or where a step does not ship them (drift, backups).
    tls: TlsFiles | None = field(default=None, repr=False)
    # chroma_tls=acme: what the host needs to obtain its certificate itself (declaration/acme.py).
    acme: AcmeTarget | None = field(default=None, repr=False)
    # The proxy's clients and their tokens (plumbing/tokens.py); None where a step does
    # not ship them (backups, a restore), or without the proxy.
    clients: ProxyClients | None = field(default=None, repr=False)

    @cached_property
    def paths(self) -> tuple[Directory | File, ...]:
        """Every dir and file the deploy converges, parents before what they hold."""
        settings, uid, gid = self.settings, self.uid, self.gid
        paths: list[Directory | File] = [
            Directory(settings.project_dir, uid, gid, settings.dir_mode)
        ]
        paths += [
            Directory(path, uid, gid, settings.data_dir_mode, gitkeep=True, recursive_owner=True)
            for path in self.data_dir_paths
        ]
        if self.token_file and self.token:
            paths.append(Directory(self.secrets_dir, uid, gid, "700"))
            paths.append(
                File(self.token_file, uid, gid, "600", token_file_content(self.token), secret=True)
            )
        if self.clients and self.proxy_dir:
            # A dir mounted into the proxy (read-write: the proxy writes there the digest of
            # the set it loaded), so a new set reaches nginx by a reload.
            paths.append(Directory(self.proxy_dir, uid, gid, "700"))
            paths.append(File(self.clients_file, uid, gid, "600", self.clients.conf(), secret=True))
            paths.append(Directory(self.audit_dir, uid, gid, settings.data_dir_mode))
        if self.clients and self.app_secrets_dir and self.clients.app:
            # The application's own dir: its token only, never the proxy's or the key's.
            paths.append(Directory(self.app_secrets_dir, uid, gid, "700"))
            paths.append(
                File(
                    f"{self.app_secrets_dir}/chroma-token.env", uid, gid, "600",
                    token_file_content(self.clients.app), secret=True,
                )
            )  # fmt: skip
        if self.tls_dir and self.tls:
            # A dir mounted into the proxy, not its files: a file mount keeps the old file
            # when the deploy replaces it, and a new certificate must reach nginx by reload.
            tls_dir, tls = self.tls_dir, self.tls
            paths.append(Directory(tls_dir, uid, gid, "700"))
            paths.append(File(f"{tls_dir}/cert.pem", uid, gid, "600", tls.cert))
            paths.append(File(f"{tls_dir}/key.pem", uid, gid, "600", tls.key, secret=True))
            paths.append(File(f"{tls_dir}/ca.pem", uid, gid, "600", tls.ca))
            paths.append(File(f"{tls_dir}/name", uid, gid, "600", tls.name + "\n"))
        if self.acme:
            paths += self.acme.resources
        if self.log_file:
            paths.append(File(self.log_file, uid, gid, "640", feeds=("chroma",)))
        if self.offsite:
            # Converged by operations/offsite.py, which runs first: only once they open
            # the repository (project.paths then finds them as declared).
            paths += self.offsite.resources
        return tuple(paths)

    @property
    def gitignore(self) -> GitignoreBlock | None:
        if not self.gitignore_lines:
            return None
        return GitignoreBlock(self.settings.path(".gitignore"), tuple(self.gitignore_lines))

    @property
    def compose_file(self) -> ComposeFile:
        return ComposeFile(self.settings.compose_path, self.compose_content, self.uid, self.gid)

    @property
    def stack(self) -> Stack:
        return Stack(
            self.settings.compose_project,
            tuple(self.services),
            self.published_service,
            self.settings.image_ref,
            self.url,
        )

    @property
    def resources(self) -> tuple[Resource, ...]:
        """Every resource, in the order the deploy converges them."""
        block = self.gitignore
        return (*self.paths, *([block] if block else []), self.compose_file, self.stack)

    @property
    def line(self) -> VersionLine:
        return version_line(self.settings.version)

    @property
    def data_dir_paths(self) -> list[str]:
        return [self.settings.path(name) for name in self.settings.data_dirs]

    @property
    def log_file(self) -> str | None:
        """Host path of the log file a 0.x server writes, mounted from logs/."""
        if self.line.log_file is None:
            return None
        return self.settings.path(f"{self.settings.logs_dir}/chroma.log")

    @property
    def gitignore_lines(self) -> list[str]:
        if not self.settings.manage_gitignore:
            return []
        secrets = self.settings.secrets_dir if self.settings.auth_proxy else None
        return gitignore_lines(self.settings.data_dirs, secrets)

    @cached_property
    def compose_content(self) -> str:
        return render_compose(self.settings, self.uid, self.gid)

    @property
    def published_port(self) -> str:
        return published_port(self.settings.bind_address, self.settings.port)

    @property
    def token_file(self) -> str | None:
        """The host's 0600 token file, when the auth proxy is on."""
        if not self.settings.auth_proxy:
            return None
        return self.settings.path(f"{self.settings.secrets_dir}/chroma-token.env")

    @property
    def proxy_dir(self) -> str | None:
        """The host's dir of the proxy's clients file (0700), mounted into the proxy."""
        if not self.settings.auth_proxy:
            return None
        return f"{self.secrets_dir}/proxy"

    @property
    def clients_file(self) -> str:
        return f"{self.secrets_dir}/proxy/clients.conf"

    @property
    def audit_dir(self) -> str:
        """Where the proxy writes its audit log (audit.log, rotated), in the logs dir."""
        return self.settings.path(f"{self.settings.logs_dir}/proxy")

    @property
    def app_secrets_dir(self) -> str | None:
        """The application service's dir of its own token file, behind the proxy."""
        if not (self.settings.auth_proxy and self.settings.app_enabled):
            return None
        return f"{self.secrets_dir}/app"

    @property
    def secrets_dir(self) -> str:
        return self.settings.path(self.settings.secrets_dir)

    @property
    def tls_dir(self) -> str | None:
        """The host's dir of the proxy's certificate and key (0700), mounted into the proxy."""
        if self.settings.tls == "off" or not self.settings.auth_proxy:
            return None
        return f"{self.secrets_dir}/tls"

    @property
    def services(self) -> list[str]:
        """The compose services the file declares, in order."""
        services = ["chroma"]
        if self.settings.auth_proxy:
            services.append("auth-proxy")
        if self.settings.app_enabled:
            services.append(self.settings.app_name)
        return services

    @property
    def published_service(self) -> str:
        """The one service with a host port: the proxy when it is on, else chroma."""
        return "auth-proxy" if self.settings.auth_proxy else "chroma"

    @property
    def url(self) -> str:
        """Where Chroma answers (through the proxy when it is on), seen from the host."""
        address = self.settings.bind_address
        if address in ("0.0.0.0", "::"):  # noqa: S104 - reaching, not binding
            address = "127.0.0.1"
        host = f"[{address}]" if ":" in address else address
        scheme = "https" if self.tls_dir else "http"
        return f"{scheme}://{host}:{self.settings.port}"

    @cached_property
    def stack_target(self) -> StackTarget:
        return stack_target(self.settings)

    @cached_property
    def data_target(self) -> DataTarget:
        """The first data dir: the one Chroma's data lives in."""
        settings = self.settings
        return DataTarget(
            settings.project_dir, settings.data_dir, self.data_dir_paths[0],
            self.line.persist_path, self.uid, self.gid, settings.data_dir_mode,
        )  # fmt: skip

    @property
    def health_check(self) -> HealthCheck:
        """Through the published port, as clients reach it."""
        return HealthCheck(self.url, self.line.heartbeat_path, self.token_file, self.tls_dir)

    @property
    def validates(self) -> bool:
        """The stack's own server refuses data with a schema migration pending: 1.x, with
        ``CHROMA_SQLITEDB__MIGRATION_MODE=validate`` (the default; chroma_env may say apply)."""
        return dict(server_environment(self.settings)).get(MIGRATION_MODE) == "validate"

    @property
    def check_server(self) -> CheckServer:
        """The declared server as a check starts it on the data dir, with no port published.

        Not on the auth proxy's loopback address: it is reached at its bridge address.
        """
        return self._server(listen=False)

    @property
    def rehearsal(self) -> CheckServer | None:
        """The new version as an upgrade's rehearsal starts it (chroma_upgrade_rehearsal)."""
        return self._server(listen=True) if self.settings.upgrade_rehearsal else None

    def _server(self, listen: bool) -> CheckServer:
        """The server's environment, but on 1.x migrating its schema (``apply``) whatever
        chroma_env says: a check server is the one start chroma-deploy makes after its
        backup (and rehearsal), where an upgrade's migration belongs; a stack whose own
        server validates (``CHROMA_SQLITEDB__MIGRATION_MODE=validate``) refuses it after."""
        environment = tuple(
            f"{name}={value}"
            for name, value in server_environment(self.settings)
            if (listen or name != "CHROMA_LISTEN_ADDRESS") and name != MIGRATION_MODE
        )
        if self.line.name == "1.x":
            environment += (f"{MIGRATION_MODE}=apply",)
        return CheckServer(
            self.settings.image_ref, self.line.persist_path, environment, self.uid, self.gid,
            self.settings.wait_timeout, self.settings.stop_grace_seconds,
        )  # fmt: skip

    @property
    def chroma_container(self) -> str:
        """Compose's name for the chroma service's container."""
        return f"{self.settings.compose_project}-chroma-1"
