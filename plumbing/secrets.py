"""The auth token and the backup repository's secrets: read on the control machine.

Each is kept on the host in a 0600 file.

pyinfra prints every command it runs, so the token never goes on a command
line: it is read from an environment variable or a file here, uploaded as a
file, and the proxy and the facts read it from that file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from declaration.offsite import OffsiteSecrets
from declaration.settings import Settings, SettingsError

TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")


def read_token(settings: Settings) -> str:
    """The token from chroma_auth_token_file, else the environment; checked, never echoed."""
    if settings.auth_token_file:
        path = Path(settings.auth_token_file)
        try:
            token = path.read_text().strip()
        except OSError as error:
            raise SettingsError(
                f"chroma_auth_token_file: {settings.auth_token_file!r} cannot be read "
                f"({error.strerror}); name a readable file on the control machine"
            ) from None
        source = f"chroma_auth_token_file={settings.auth_token_file!r}"
    else:
        token = os.environ.get(settings.auth_token_env, "").strip()
        source = f"the environment variable {settings.auth_token_env} (chroma_auth_token_env)"
    if not token:
        raise SettingsError(
            f"chroma_auth_proxy: true needs a token; set {source} on the control machine"
        )
    if not TOKEN.match(token):
        raise SettingsError(
            f"chroma_auth_proxy: the token from {source} is not allowed; use 16 to 256 "
            "characters of A-Z a-z 0-9 . _ ~ + / = -"
        )
    return token


def _read_file(key: str, path: str, what: str) -> str:
    """A control-machine file's text, or one line naming the key (never its content)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not text"
        raise SettingsError(
            f"{key}: {path!r} cannot be read ({reason}); name a readable file on the control "
            f"machine that holds {what}"
        ) from None
    if not text.strip():
        raise SettingsError(f"{key}: {path!r} is empty; it must hold {what}")
    return text


def read_backup_secrets(settings: Settings) -> OffsiteSecrets | None:
    """chroma_backup_repository's password, SSH key and known_hosts, read here; never echoed.

    None without a repository. The settings checked already which of the files the
    repository needs (declaration/settings.py, _check_backup_repository).
    """
    if not settings.backup_repository or not settings.backup_password_file:
        return None
    password = _read_file(
        "chroma_backup_password_file", settings.backup_password_file, "the repository's password"
    )
    ssh_key = known_hosts = None
    if settings.backup_ssh_key:
        ssh_key = _read_file(
            "chroma_backup_ssh_key", settings.backup_ssh_key, "the private key for the repository"
        )
    if settings.backup_known_hosts:
        known_hosts = _read_file(
            "chroma_backup_known_hosts",
            settings.backup_known_hosts,
            "the repository host's known_hosts line(s) (ssh-keyscan HOST, checked)",
        )
    return OffsiteSecrets(settings.backup_repository, password, ssh_key, known_hosts)
