"""chroma_tls=acme on the host: lego, the program that runs it, and what it last installed."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import sections, shell_word
from facts.tls import _read_x509


class AcmeCertificate(FactBase[dict[str, Any]]):
    """lego, files/chroma-acme.sh at ``program``, and the certificate it installed.

    ``{"lego": bool, "program": bool, "log_dir": bool, "issued": str or None,
    "issued_fingerprint": str or None, "file": {"fingerprint": str, "not_after": int,
    "names": [str]} or None}``. ``lego``: the command is on the PATH; ``program``: the file
    is there; ``log_dir``: the dir the schedule logs to exists; ``issued``: the CA and names
    the program last installed a certificate from, and ``issued_fingerprint`` that
    certificate's SHA-256 (``<acme_dir>/issued``), None when it never did; ``file``: the
    certificate in ``tls_dir`` (None: none readable, or no openssl on the host).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"lego": False, "program": False, "log_dir": False, "issued": None,
                "issued_fingerprint": None, "file": None}  # fmt: skip

    def command(self, acme_dir: str, tls_dir: str, program: str, log_dir: str) -> str:
        cert = shell_word(f"{tls_dir}/cert.pem")
        return (
            "echo @@lego; command -v lego; true; "
            f"echo @@program; test -f {shell_word(program)} && echo yes; true; "
            f"echo @@log_dir; test -d {shell_word(log_dir)} && echo yes; true; "
            f"echo @@issued; cat {shell_word(acme_dir + '/issued')} 2>/dev/null; true; "
            f"echo @@file; openssl x509 -in {cert} -noout -fingerprint -sha256 -enddate "
            "-ext subjectAltName 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        result["lego"] = any(line.strip() for line in found.get("lego", []))
        result["program"] = any(line.strip() == "yes" for line in found.get("program", []))
        result["log_dir"] = any(line.strip() == "yes" for line in found.get("log_dir", []))
        issued = [line.strip() for line in found.get("issued", []) if line.strip()]
        result["issued"] = issued[0] if issued else None
        result["issued_fingerprint"] = issued[1] if len(issued) > 1 else None
        file = _read_x509(found.get("file", []))
        if file.get("fingerprint") and file.get("not_after") is not None:
            result["file"] = file
        return result
