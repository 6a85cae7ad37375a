"""The proxy's certificate on the host: the file nginx should serve, and the one it serves."""

from __future__ import annotations

import calendar
import time
from typing import Any

from pyinfra.api import FactBase

from facts._shell import sections, shell_word


class ProxyCertificate(FactBase[dict[str, Any]]):
    """The certificate in the host's TLS dir, and the one the proxy's port serves (openssl).

    ``{"file": {"fingerprint": str, "not_after": int (epoch seconds), "names": [str]} or
    None, "served": str or None}``. ``file`` None: no readable ``cert.pem`` there (or no
    openssl on the host). ``served`` None: nothing answered TLS on ``address``:``port``
    within 5 s. Fingerprints are SHA-256, as openssl writes them (``AA:BB:...``); names
    are the subject alternative names (``DNS:`` and ``IP Address:`` taken off).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"file": None, "served": None}

    def command(self, tls_dir: str, address: str, port: int) -> str:
        cert = shell_word(f"{tls_dir}/cert.pem")
        connect = shell_word(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
        return (
            f"echo @@file; openssl x509 -in {cert} -noout -fingerprint -sha256 -enddate "
            "-ext subjectAltName 2>/dev/null; "
            f"echo @@served; timeout 5 openssl s_client -connect {connect} </dev/null 2>/dev/null"
            " | openssl x509 -noout -fingerprint -sha256 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        file = _read_x509(found.get("file", []))
        if file.get("fingerprint") and file.get("not_after") is not None:
            result["file"] = file
        result["served"] = _read_x509(found.get("served", [])).get("fingerprint")
        return result


def _read_x509(lines: list[str]) -> dict[str, Any]:
    """openssl x509's -fingerprint, -enddate and -ext subjectAltName lines, as a dict."""
    read: dict[str, Any] = {"names": []}
    for line in (line.strip() for line in lines):
        label, _, value = line.partition("=")
        if label.lower().startswith("sha256 fingerprint"):
            read["fingerprint"] = value.strip()
        elif label == "notAfter":
            try:
                parsed = time.strptime(" ".join(value.split()), "%b %d %H:%M:%S %Y %Z")
            except ValueError:
                continue
            read["not_after"] = calendar.timegm(parsed)
        elif line.startswith(("DNS:", "IP Address:")):
            read["names"] = [
                name.strip().split(":", 1)[1].strip() for name in line.split(",") if ":" in name
            ]
    return read
