"""A secret file's state on the host, without its content."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q


class SecretFile(FactBase[dict[str, Any] | None]):
    """None when the file is missing, else ``{"sha256", "uid", "gid", "mode"}``.

    Only a digest of the content is read, so the secret never reaches pyinfra's
    output, even at -vvv.
    """

    def command(self, path: str) -> str:
        quoted = q(path)
        return (
            f"test -f {quoted} || exit 0; stat -c '%u %g %a' {quoted}; "
            f"sha256sum {quoted} | cut -d' ' -f1"
        )

    def process(self, output: list[str]) -> dict[str, Any] | None:
        lines = [line for line in output if line.strip()]
        if not lines:
            return None
        try:
            uid, gid, mode = lines[0].split()
            return {"sha256": lines[1].strip(), "uid": int(uid), "gid": int(gid), "mode": mode}
        except (ValueError, IndexError):
            raise parse_error("SecretFile", "unexpected stat/sha256sum output") from None
