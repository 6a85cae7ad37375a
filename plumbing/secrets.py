"""The auth token: read on the control machine, kept on the host in one 0600 file.

pyinfra prints every command it runs, so the token never goes on a command
line: it is read from an environment variable or a file here, uploaded as a
file, and the proxy and the facts read it from that file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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
