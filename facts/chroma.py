"""Whether Chroma answers on the host, how fast, and which server version runs."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import q, sections


class ChromaHealth(FactBase[dict[str, Any]]):
    """The heartbeat as seen from the host itself (curl, else bash's /dev/tcp).

    ``{"reachable": bool, "status": int|None, "seconds": float|None,
    "heartbeat": int|None, "api_version": str|None, "image": str|None,
    "image_version": str|None, "error": str|None}``. ``image_version`` comes
    from the running container's image (label, else tag), because
    ``/api/v2/version`` answers "1.0.0" for every 1.x release. With
    ``token_file`` (the auth proxy's 0600 file) the token is sent as
    ``X-Chroma-Token``, fed to curl on stdin.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        keys = ("status", "seconds", "heartbeat", "api_version", "image", "image_version", "error")
        return {"reachable": False, **dict.fromkeys(keys)}

    def command(
        self,
        url: str,
        heartbeat_path: str,
        container: str | None = None,
        token_file: str | None = None,
    ) -> str:
        heartbeat = q(url.rstrip("/") + heartbeat_path)
        version = q(url.rstrip("/") + "/api/v2/version")
        host_port = url.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.rpartition(":")
        raw = (
            f"exec 3<>/dev/tcp/{host}/{port}"
            f" && printf 'GET {heartbeat_path} HTTP/1.0\\r\\n\\r\\n' >&3"
            ' && read -r _ status _ <&3 && echo "$status"'
        )
        # The token goes to curl on stdin as a header, read from its 0600 file:
        # it never appears on a command line or in this fact's output.
        header = (
            f"sed 's/^CHROMA_AUTH_TOKEN=/X-Chroma-Token: /' {q(token_file)} 2>/dev/null | "
            if token_file
            else ""
        )
        auth = " -H @-" if token_file else ""
        parts = [
            "if command -v curl >/dev/null 2>&1; then "
            f"echo @@heartbeat; {header}curl -sS -m 5{auth}"
            f" -w '\\n@@meta\\n%{{http_code}} %{{time_total}}\\n' {heartbeat} 2>&1; "
            f"echo @@version; {header}curl -sS -m 5{auth} {version} 2>/dev/null; echo; "
            f"else echo @@bash; timeout 5 bash -c {q(raw)} 2>&1; fi",
        ]
        if container:
            parts.append(
                f"echo @@image; docker inspect --format "
                "'{{.Config.Image}}|{{index .Config.Labels \"org.opencontainers.image.version\"}}' "
                f"{q(container)} 2>/dev/null"
            )
        return "; ".join(parts) + "; true"

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        if found.get("meta"):
            code, seconds = ([*found["meta"][0].split(), "0"])[:2]
            status = int(code) if code.isdigit() else 0
            body = "\n".join(found.get("heartbeat", []))
            result["status"] = status or None
            result["reachable"] = status > 0
            result["seconds"] = float(seconds) if status else None
            if status == 200:
                try:
                    result["heartbeat"] = int(json.loads(body)["nanosecond heartbeat"])
                except (ValueError, KeyError, TypeError):
                    result["error"] = f"unexpected heartbeat body: {body[:80]}"
            elif status:
                result["error"] = f"HTTP {status}"
            else:
                result["error"] = body.strip()[:200] or "no answer"
        elif "bash" in found:
            line = " ".join(found["bash"]).strip()
            if line.isdigit():
                result["status"], result["reachable"] = int(line), True
            else:
                result["error"] = line[:200] or "no answer"
        version = " ".join(found.get("version", [])).strip()
        if version.startswith('"'):
            with contextlib.suppress(ValueError):
                result["api_version"] = json.loads(version)
        image_lines = [line for line in found.get("image", []) if line.strip()]
        if image_lines:
            image, _, label = image_lines[0].partition("|")
            result["image"] = image
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
            result["image_version"] = label if label and label != "<no value>" else tag
        return result
