"""The state a host should be in, derived once from its settings and owner.

deploy.py passes these values to its operations and drift.py compares the
facts against the very same values: one declaration, no second list of
expectations that could disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from operations.project import gitignore_lines
from operations.render import published_port, render_compose
from operations.settings import Settings
from operations.versions import VersionLine, version_line


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
        return gitignore_lines(self.settings.data_dirs) if self.settings.manage_gitignore else []

    @cached_property
    def compose_content(self) -> str:
        return render_compose(self.settings, self.uid, self.gid)

    @property
    def published_port(self) -> str:
        return published_port(self.settings.bind_address, self.settings.port)

    @property
    def url(self) -> str:
        """Where Chroma answers, seen from the host itself."""
        address = self.settings.bind_address
        if address in ("0.0.0.0", "::"):  # noqa: S104 - reaching, not binding
            address = "127.0.0.1"
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{self.settings.port}"

    @property
    def chroma_container(self) -> str:
        """Compose's name for the chroma service's container."""
        return f"{self.settings.compose_project}-chroma-1"
