"""The state a host should be in, derived once from its settings and owner.

deploy.py passes these values to its operations and drift.py compares the
facts against the very same values: one declaration, no second list of
expectations that could disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from declaration.gitignore import gitignore_lines
from declaration.render import published_port, render_compose
from declaration.settings import Settings
from declaration.versions import VersionLine, version_line


@dataclass(frozen=True)
class Declared:
    """Everything deploy.py declares for one host."""

    settings: Settings
    uid: int
    gid: int

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
    def secrets_dir(self) -> str:
        return self.settings.path(self.settings.secrets_dir)

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
        return f"http://{host}:{self.settings.port}"

    @property
    def chroma_container(self) -> str:
        """Compose's name for the chroma service's container."""
        return f"{self.settings.compose_project}-chroma-1"
