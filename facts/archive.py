"""A backup archive as restore.py finds it on the host: there, whole, what it holds."""

from __future__ import annotations

import base64
import binascii
from pathlib import PurePosixPath
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word

# At most this many top-level names are listed: an archive of backup.py holds one.
TOP_NAMES = 20


class BackupArchive(FactBase[dict[str, Any]]):
    """An archive of backup.py and the .sha256 and .json it writes beside it.

    ``{"archive": bool, "sha256": None | "match" | "differs", "manifest": None
    | str, "listed": None | bool, "top": [names]}``. ``archive`` False: no file
    at the path (then everything else is None or empty, as for a missing
    part). ``sha256`` None: no .sha256 beside it; otherwise what ``sha256sum
    -c`` says, run in the archive's dir as backup.py wrote it. ``manifest``:
    the .json's text, None when missing. ``listed`` (read only when the
    checksum matches, so a damaged archive is read once): whether ``tar -tzf``
    read the archive to its end; ``top``: its distinct top-level names, in
    archive order, at most TOP_NAMES. Nothing here is extracted or changed.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"archive": False, "sha256": None, "manifest": None, "listed": None, "top": []}

    def command(self, archive: str) -> str:
        path = PurePosixPath(archive)
        stem = archive.removesuffix(".tar.gz")
        sums, manifest = shell_word(f"{stem}.sha256"), shell_word(f"{stem}.json")
        check = (
            f"(cd {shell_word(str(path.parent))} && "
            f"sha256sum -c --quiet {shell_word(PurePosixPath(stem).name + '.sha256')}) "
            ">/dev/null 2>&1"
        )
        top = (
            f"awk -F/ -v max={TOP_NAMES} "
            '\'$0 == "@@listed" {tail = 1} tail {print; next} '
            "!seen[$1]++ && n++ < max {print $1}'"
        )
        return (
            f"test -f {shell_word(archive)} || exit 0; echo @@archive; "
            f"echo @@manifest; if test -f {manifest}; then base64 -w0 < {manifest}; echo; fi; "
            f"echo @@sha256; test -f {sums} || exit 0; "
            f"if {check}; then echo match; else echo differs; exit 0; fi; "
            f"echo @@top; {{ tar -tzf {shell_word(archive)} 2>/dev/null; s=$?; "
            f"echo @@listed; echo $s; }} | {top}"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        if "archive" not in found:
            return result
        result["archive"] = True
        if found.get("manifest"):
            try:
                raw = base64.b64decode("".join(found["manifest"]).strip(), validate=True)
            except (ValueError, binascii.Error) as error:
                raise parse_error("BackupArchive", f"base64: {error}") from None
            result["manifest"] = raw.decode("utf-8", errors="replace")
        if found.get("sha256"):
            result["sha256"] = found["sha256"][0].strip()
        if "listed" in found:
            result["listed"] = [line.strip() for line in found["listed"]] == ["0"]
            result["top"] = [name for name in found.get("top", []) if name]
        return result
