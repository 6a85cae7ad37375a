"""What the deploy's operations act on: small typed values, each derived once.

An operation takes one of these instead of arguments re-spelled at every call
(deploys/chroma.py): :class:`StackTarget` is the compose project, :class:`DataTarget`
the declared data dir, :class:`HealthCheck` where Chroma answers, :class:`CheckServer`
the declared server as a check (or an upgrade's rehearsal) starts it, with no port
published. :class:`declaration.resources.Declared` derives each from the settings,
the owner and the token; nothing else spells them out.

Frozen, holding only strings, numbers and tuples: equal settings give equal values,
and their ``repr`` is stable. pyinfra keys an operation by the lines that call it
and shows it by its ``name=``, never by these values (pyinfra 3.10,
``api/operation.py``: ``solve_operation_consistency``); tests/unit/test_targets.py
checks both. The operation fixtures write them as JSON objects with a ``kind``
(tests/unit/test_operation_fixtures.py builds them in one place).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from declaration.settings import STOP_GRACE_SECONDS

if TYPE_CHECKING:
    from declaration.settings import Settings


@dataclass(frozen=True)
class StackTarget:
    """The compose project a step acts on, the Chroma image it runs, how long ``up`` waits.

    ``stop_grace``: the seconds a stop gives Chroma after SIGTERM (chroma_stop_grace_seconds),
    for the stops that do not go through the compose file (``docker stop``).
    """

    project_dir: str
    project_name: str
    image: str
    wait_timeout: int
    stop_grace: int = STOP_GRACE_SECONDS

    @property
    def read(self) -> dict[str, Any]:
        """ComposeStack's arguments: every step reads it alike, so one reading serves all."""
        return {"project_dir": self.project_dir, "project_name": self.project_name,
                "image": self.image}  # fmt: skip


@dataclass(frozen=True)
class DataTarget:
    """The declared data dir: its name in the project dir, its path, and what a copy gets.

    ``persist_path``: where the declared version reads its data in the container (a
    mount target to look for). ``uid``, ``gid``, ``mode``: what data copied into it is
    given (the container runs as that owner).
    """

    project_dir: str
    name: str
    path: str
    persist_path: str
    uid: int
    gid: int
    mode: str


@dataclass(frozen=True)
class HealthCheck:
    """Where Chroma answers, seen from the host (through the proxy when it is on).

    ``tls_dir``: with TLS on, the host's dir of the proxy's certificate: its ``ca.pem``
    verifies the answer for the name in its ``name`` file (curl --cacert, --resolve).
    """

    url: str
    heartbeat_path: str
    token_file: str | None
    tls_dir: str | None = None

    @property
    def read(self) -> dict[str, Any]:
        """ChromaHealth's arguments, as the deploy and drift both read it."""
        read = {"url": self.url, "heartbeat_path": self.heartbeat_path,
                "token_file": self.token_file}  # fmt: skip
        if self.tls_dir:
            read["tls_dir"] = self.tls_dir
        return read


@dataclass(frozen=True)
class CheckServer:
    """A Chroma server files/chroma_safety.py starts on data to check it, with no port published.

    ``environment``: its ``NAME=value`` lines; ``timeout``: seconds it has to answer;
    ``stop_grace``: seconds it has after SIGTERM when it is stopped (it opened live data).
    """

    image: str
    persist_path: str
    environment: tuple[str, ...]
    uid: int
    gid: int
    timeout: int
    stop_grace: int = STOP_GRACE_SECONDS


def stack_target(settings: Settings) -> StackTarget:
    """The settings' compose project (the pre-flight checks read it before the owner is known)."""
    return StackTarget(
        settings.project_dir, settings.compose_project, settings.image_ref, settings.wait_timeout,
        settings.stop_grace_seconds,
    )  # fmt: skip
