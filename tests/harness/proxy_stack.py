"""What the proxy's test files (TLS, ACME, tokens) read of the stack each of them shares.

Each file's ``Stack`` declares its own data; these reads are the same for all three: the
stack's container ids (a reload must keep them: Chroma is never restarted) and the
certificate the proxy serves against the one on disk.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _sh(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True,
                          check=False).stdout  # fmt: skip


class ServedStack:
    """Reads of a compose project ``name`` whose proxy publishes ``port`` on loopback."""

    name: str
    port: int

    def container_ids(self) -> dict[str, str]:
        ids = _sh(
            "docker ps --no-trunc --filter "
            f"label=com.docker.compose.project={self.name} --format '{{{{.Names}}}} {{{{.ID}}}}'"
        ).split("\n")
        return dict(line.split() for line in ids if line.strip())

    def served_fingerprint(self) -> str:
        served = _sh(
            f"openssl s_client -connect 127.0.0.1:{self.port} </dev/null 2>/dev/null | "
            "openssl x509 -noout -fingerprint -sha256"
        )
        return served.strip().split("=", 1)[1]

    @staticmethod
    def file_fingerprint(path: Path) -> str:
        read = _sh(f"openssl x509 -in '{path}' -noout -fingerprint -sha256")
        return read.split("=")[1].strip()
