"""A secret file's state on the host, without its content."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, shell_word, to_int


class SecretFile(FactBase[dict[str, Any] | None]):
    """None when no regular file is at ``path``, else ``{"sha256", "uid", "gid", "mode"}``.

    ``mode`` is octal as ``stat -c %a`` prints it ("600"). Only a digest of
    the content is read, so the secret never reaches pyinfra's output, even at
    -vvv.
    """

    @staticmethod
    def default() -> dict[str, Any] | None:
        return None

    def command(self, path: str) -> str:
        quoted = shell_word(path)
        return (
            f"test -f {quoted} || exit 0; stat -c '%u %g %a' -- {quoted}; "
            # From stdin: sha256sum escapes a file name holding a newline or a backslash
            # and marks the digest line with a leading backslash.
            f"sha256sum < {quoted} | cut -d' ' -f1"
        )

    def process(self, output: list[str]) -> dict[str, Any] | None:
        lines = [line for line in output if line.strip()]
        if not lines:
            return None
        try:
            uid, gid, mode = lines[0].split()
            digest = lines[1].strip()
        except (ValueError, IndexError):
            raise parse_error("SecretFile", "unexpected stat/sha256sum output") from None
        if len(digest) != 64:
            raise parse_error("SecretFile", "no sha256 digest (file unreadable?)")
        return {
            "sha256": digest,
            "uid": to_int(uid, "SecretFile", "uid"),
            "gid": to_int(gid, "SecretFile", "gid"),
            "mode": mode,
        }
