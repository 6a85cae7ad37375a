"""Whether Chroma answers on the host, how fast, and which server version runs."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word

# Without curl: bash's /dev/tcp. Host, port, path and token file are the
# script's arguments ($1..$4), never part of its text. The token is read into
# the shell and written by the printf builtin: it is on no command line.
_BASH_GET = r"""exec 3<>"/dev/tcp/$1/$2" || exit 0
printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n' "$3" "$1" "$2" >&3
if [ -n "$4" ]; then
  t=$(sed -n 's/^CHROMA_AUTH_TOKEN=//p' "$4" 2>/dev/null)
  [ -n "$t" ] && printf 'X-Chroma-Token: %s\r\n' "$t" >&3
fi
printf '\r\n' >&3
cat <&3"""

_STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})\b")


def answers(health: dict[str, Any]) -> bool:
    """Whether a :class:`ChromaHealth` reading is Chroma answering: HTTP 200 with a heartbeat.

    The one meaning of "Chroma answers" for drift, the deploy and up.sh's summary.
    """
    return health["status"] == 200 and bool(health["heartbeat"])


class ChromaHealth(FactBase[dict[str, Any]]):
    """The heartbeat as seen from the host itself (curl, else bash's /dev/tcp).

    ``{"reachable": bool, "status": int|None, "seconds": float|None,
    "heartbeat": int|None, "api_version": str|None, "image": str|None,
    "image_version": str|None, "error": str|None}``. ``reachable`` False: no
    HTTP answer (``error`` holds curl's or bash's message, ``status`` and
    ``seconds`` are None). ``heartbeat`` is None unless the answer was 200
    with the ``nanosecond heartbeat`` JSON; ``error`` says why otherwise.
    ``api_version``: the JSON string ``/api/v2/version`` answers (None: not
    one, or no curl). ``seconds`` is None without curl. ``image`` and
    ``image_version`` are None unless ``container`` is given and exists:
    the version is the image's ``org.opencontainers.image.version`` label,
    else its tag, because ``/api/v2/version`` answers "1.0.0" for every 1.x
    release. With ``token_file`` (the auth proxy's 0600 env file) its
    ``CHROMA_AUTH_TOKEN`` is sent as ``X-Chroma-Token``, fed to curl on stdin.
    With ``tls_dir`` (TLS on the proxy) the heartbeat is asked over https, verified with
    that dir's ``ca.pem`` for the name in its ``name`` file (curl only).
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
        tls_dir: str | None = None,
    ) -> str:
        base = url.rstrip("/")
        heartbeat = shell_word(base + heartbeat_path)
        version = shell_word(base + "/api/v2/version")
        parts = urlsplit(base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        tls = tls_args = ""
        if tls_dir:
            # Verified as a client verifies it: the CA (or the certificate itself), for
            # the name the certificate holds, sent to the address the port is on.
            address = parts.hostname or ""
            address = f"[{address}]" if ":" in address else address
            tls = (
                f"tls_name=$(cat {shell_word(tls_dir + '/name')} 2>/dev/null); tls_host=$tls_name; "
                'case $tls_name in *:*) tls_host="[$tls_name]";; esac; '
            )
            base_word = f'"https://$tls_host:{port}"'
            heartbeat = base_word + shell_word(heartbeat_path)
            version = base_word + shell_word("/api/v2/version")
            tls_args = (
                f" --cacert {shell_word(tls_dir + '/ca.pem')}"
                f' --resolve "$tls_host:{port}:{address}"'
            )
        # The token goes to curl on stdin as a header, read from its 0600 file:
        # it never appears on a command line or in this fact's output.
        header = (
            f"sed 's/^CHROMA_AUTH_TOKEN=/X-Chroma-Token: /' {shell_word(token_file)} 2>/dev/null | "
            if token_file
            else ""
        )
        auth = " -H @-" if token_file else ""
        raw_args = " ".join(shell_word(arg) for arg in (parts.hostname or "", port, heartbeat_path))
        raw_args += f" {shell_word(token_file)}" if token_file else ""
        auth += tls_args
        # Without curl, bash speaks plain HTTP only: over TLS that is no answer.
        fallback = (
            "echo 'no curl on the host to ask over https'"
            if tls_dir
            else f"timeout 5 bash -c {shell_word(_BASH_GET)} chroma-health {raw_args}"
        )
        command = (
            f"{tls}if command -v curl >/dev/null 2>&1; then "
            f"echo @@heartbeat; {header}curl -sS -m 5{auth}"
            f" -w '\\n@@meta\\n%{{http_code}} %{{time_total}}\\n' {heartbeat} 2>&1; "
            f"echo @@version; {header}curl -sS -m 5{auth} {version} 2>/dev/null; echo; "
            f"else echo @@bash; {fallback} 2>&1; echo; fi; "
        )
        if container:
            command += (
                "echo @@image; docker inspect --format "
                "'{{.Config.Image}}|{{index .Config.Labels \"org.opencontainers.image.version\"}}' "
                f"{shell_word(container)} 2>/dev/null; "
            )
        return command + "true"

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        if "heartbeat" in found:
            _read_curl(found, result)
        elif "bash" in found:
            _read_raw_http(found["bash"], result)
        version = " ".join(found.get("version", [])).strip()
        if version.startswith('"'):
            with contextlib.suppress(ValueError):
                result["api_version"] = str(json.loads(version))
        image_lines = [line for line in found.get("image", []) if line.strip()]
        if image_lines:
            image, _, label = image_lines[0].strip().partition("|")
            result["image"] = image
            result["image_version"] = label if label and label != "<no value>" else _tag(image)
        return result


def _tag(image: str) -> str | None:
    """The tag of an image reference (``chromadb/chroma:1.5.9`` -> ``1.5.9``), or None."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def _read_heartbeat(status: int, body: str, result: dict[str, Any]) -> None:
    result["status"], result["reachable"] = status, True
    if status != 200:
        result["error"] = f"HTTP {status}"
        return
    try:
        result["heartbeat"] = int(json.loads(body)["nanosecond heartbeat"])
    except (ValueError, KeyError, TypeError):
        result["error"] = f"unexpected heartbeat body: {body.strip()[:80]}"


def _read_curl(found: dict[str, list[str]], result: dict[str, Any]) -> None:
    body = "\n".join(found["heartbeat"])
    meta = (found.get("meta") or [""])[0].split()
    code = meta[0] if meta else ""
    if code.isdigit() and int(code) > 0:
        _read_heartbeat(int(code), body, result)
        with contextlib.suppress(IndexError, ValueError):
            result["seconds"] = float(meta[1])
    else:
        result["error"] = body.strip()[:200] or "no answer"


def _read_raw_http(lines: list[str], result: dict[str, Any]) -> None:
    lines = [line.rstrip("\r") for line in lines]
    match = _STATUS_LINE.match(lines[0]) if lines else None
    if not match:
        result["error"] = " ".join(line for line in lines if line.strip())[:200] or "no answer"
        return
    body = lines[lines.index("") + 1 :] if "" in lines else []
    _read_heartbeat(int(match.group(1)), "\n".join(body), result)


class ChromaInventory(FactBase[dict[str, Any]]):
    """What the server holds, and what a backup manifest says it should hold.

    ``{"live": inventory or None, "manifest": the JSON of ``manifest`` or
    None}``. ``live`` is None when the inventory tool is not on the host yet
    (it is uploaded by the first operation that needs it) or the server does
    not answer; the caller must then act as if the data differed. The
    inventory is files/chroma_inventory.py's: ``{"collections": {...}}``.
    ``tls_dir``: with chroma_tls on, the host's dir of the proxy's ca.pem and
    name, which verify the https url (chroma_inventory.py --tls-dir).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"live": None, "manifest": None}

    def command(
        self,
        url: str,
        tools_dir: str,
        token_file: str | None = None,
        manifest: str | None = None,
        tls_dir: str | None = None,
    ) -> str:
        tool = f"{tools_dir}/chroma_inventory.py"
        token = f" --token-file {shell_word(token_file)}" if token_file else ""
        token += f" --tls-dir {shell_word(tls_dir)}" if tls_dir else ""
        scopes = ""
        read_manifest = ""
        if manifest:
            read_manifest = f"echo @@manifest; cat {shell_word(manifest)} 2>/dev/null; echo; "
            scopes = f" --scopes-from {shell_word(manifest)}"  # every tenant/database it names
        return (
            f"{read_manifest}echo @@live; test -f {shell_word(tool)} && "
            f"python3 {shell_word(tool)} {shell_word(url)}{token}{scopes} 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result: dict[str, Any] = self.default()
        for key in ("live", "manifest"):
            text = "".join(found.get(key, [])).strip()
            if not text:
                continue
            try:
                result[key] = json.loads(text)
            except ValueError:
                raise parse_error("ChromaInventory", f"{key} is not JSON: {text[:80]!r}") from None
        return result
