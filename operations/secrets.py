"""The auth token: read on the control machine, kept on the host in one 0600 file.

pyinfra prints every command it runs, so the token never goes on a command
line: it is read from an environment variable or a file here, uploaded as a
file, and the proxy and the facts read it from that file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation

from declaration.settings import Settings, SettingsError
from facts.secrets import SecretFile

TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,}$")
ENV_PREFIX = "CHROMA_AUTH_TOKEN="


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
            f"chroma_auth_proxy: the token from {source} is not allowed; use 16 or more "
            "characters of "
            "A-Z a-z 0-9 . _ ~ + / = -"
        )
    return token


def token_file_content(token: str) -> str:
    """What the host's token file holds: one env-style line, read by proxy and facts."""
    return f"{ENV_PREFIX}{token}\n"


def token_file_digest(token: str) -> str:
    return hashlib.sha256(token_file_content(token).encode()).hexdigest()


@operation()
def token_file(path: str, token: str, uid: int, gid: int):
    """The token file: mode 0600, owned by the stack's owner, content as declared.

    + path: where the file lives on the host (inside the 0700 secrets dir)
    + token: the token (compared by digest; uploaded as a file, never printed)
    + uid, gid: owner and group
    """
    found = host.get_fact(SecretFile, path=path)
    owner = f"{uid}:{gid}"
    if found is None or found["sha256"] != token_file_digest(token):
        temp = f"{path}.chroma-deploy.tmp"
        yield shlex.join(
            ["install", "-m", "600", "-o", str(uid), "-g", str(gid), "/dev/null", temp]
        )
        yield FileUploadCommand(StringIO(token_file_content(token)), temp)
        yield " && ".join(
            shlex.join(args)
            for args in (["chmod", "600", temp], ["chown", owner, temp], ["mv", "-f", temp, path])
        )
        return
    if (found["uid"], found["gid"]) != (uid, gid):
        yield shlex.join(["chown", owner, path])
    if found["mode"] != "600":
        yield shlex.join(["chmod", "600", path])
    if (found["uid"], found["gid"], found["mode"]) == (uid, gid, "600"):
        host.noop(f"{path} holds the declared token, mode 0600, owner {uid}:{gid}")
