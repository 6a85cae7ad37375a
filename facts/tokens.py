"""The auth proxy's clients on the host: names, roles and digests, never a token."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import sections, shell_word


class ProxyClients(FactBase[dict[str, Any]]):
    """Who the host's clients file lets in, and whether the proxy loaded that file.

    ``{"clients": [str] or None, "file": str or None, "loaded": str or None}``.
    ``clients``: the file's ``# client`` lines without the prefix (``name role``, and
    ``name role until <epoch>`` for an old token kept through a rotation), in order;
    None: no readable file. ``file``: its sha256. ``loaded``: the sha256 of the file the
    running proxy loaded, as the proxy wrote it in ``loaded`` beside it (None: no proxy
    of image :6 or later started on this dir yet). Only those lines and digests leave
    the host: the tokens in the file never do.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"clients": None, "file": None, "loaded": None}

    def command(self, proxy_dir: str) -> str:
        clients = shell_word(f"{proxy_dir}/clients.conf")
        loaded = shell_word(f"{proxy_dir}/loaded")
        return (
            f"echo @@clients; if [ -r {clients} ]; then echo @@present; "
            f"sed -n 's/^# client //p' {clients}; "
            f"echo @@file; sha256sum {clients} | cut -d' ' -f1; fi; "
            f"echo @@loaded; head -c 64 {loaded} 2>/dev/null; echo; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        if "present" in found:
            result["clients"] = [line.strip() for line in found["present"] if line.strip()]
            digest = [line.strip() for line in found.get("file", []) if line.strip()]
            result["file"] = digest[0] if digest else None
        loaded = [line.strip() for line in found.get("loaded", []) if line.strip()]
        result["loaded"] = loaded[0] if loaded else None
        return result
