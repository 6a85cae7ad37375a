"""The clients' tokens, on the control machine (docs/security.md, "Clients and roles").

``chroma_tokens_dir`` (0700) holds one 0600 ``<client>.token`` per client: written there by
you, or generated here when missing (:mod:`secrets`, 256 bits). Besides the clients of
``chroma_tokens`` it holds the application service's (client ``chroma_app_name``) and the
host's own checks' (client ``chroma-deploy``). A token is never printed, never on a command
line or in an environment: it reaches the host inside a 0600 file.

A rotation is a new value in a client's file. Its old value stays valid for
``chroma_token_overlap_seconds``: ``.rotation/<client>.json`` (0600) remembers the value last
seen and, after a change, the one before and when the change was first seen. The first
deploy after the overlap leaves the old value out.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import stat
import time
from pathlib import Path

from declaration.clients import Client, ProxyClients
from declaration.settings import HOST_TOOLS_CLIENT, Settings, SettingsError
from plumbing.secrets import TOKEN, read_token

DEFAULT_CLIENT = "default"
DEFAULT_ROLE = "write"
APP_ROLE = "write"


def clients_for_host(settings: Settings, now: float | None = None) -> ProxyClients | None:
    """Every client the proxy lets in, with its token(s), or None without the proxy.

    Without ``chroma_tokens_dir`` the proxy has one client, ``default`` (role write), whose
    token is today's single one, which the host's own checks and the application use too.
    SettingsError: one line naming the key.
    """
    if not settings.auth_proxy:
        return None
    roles = dict(settings.tokens)
    if not settings.tokens_dir:
        token = read_token(settings)
        role = roles.get(DEFAULT_CLIENT, DEFAULT_ROLE)
        default = Client(DEFAULT_CLIENT, role, token)
        return ProxyClients((default,), host_tools=token, app=token)
    legacy = _legacy_token(settings)
    now = time.time() if now is None else now
    wanted = dict(roles)
    if legacy is not None:
        wanted.setdefault(DEFAULT_CLIENT, DEFAULT_ROLE)
    app = settings.app_name if settings.app_enabled else None
    if app is not None:
        wanted.setdefault(app, APP_ROLE)
    wanted[HOST_TOOLS_CLIENT] = "write"
    directory = Path(settings.tokens_dir)
    try:
        _private_dir(directory)
        with (directory / ".lock").open("a") as lock:
            # One writer at a time: a fleet's hosts run in parallel, as may two deploys.
            fcntl.flock(lock, fcntl.LOCK_EX)
            clients = tuple(
                _client(directory, name, role, legacy, settings.token_overlap_seconds, now)
                for name, role in sorted(wanted.items())
            )
    except OSError as error:
        raise SettingsError(
            f"chroma_tokens_dir: {settings.tokens_dir!r} cannot be used ({error.strerror}); "
            "name a dir on the control machine this user may write"
        ) from None
    _refuse_shared_values(settings.tokens_dir, clients)
    by_name = {client.name: client.token for client in clients}
    return ProxyClients(
        clients,
        host_tools=by_name[HOST_TOOLS_CLIENT],
        app=by_name[app] if app else None,
    )


def _refuse_shared_values(tokens_dir: str, clients: tuple[Client, ...]) -> None:
    """Two clients with one token would be one client: the audit log could not tell them apart."""
    owners: dict[str, str] = {}
    for client in clients:
        for token in (client.token, client.previous):
            if token is None:
                continue
            other = owners.setdefault(token, client.name)
            if other != client.name:
                raise SettingsError(
                    f"chroma_tokens_dir: clients {other!r} and {client.name!r} have the same "
                    f"token (now or within chroma_token_overlap_seconds); give each its own: "
                    f"remove {tokens_dir}/{client.name}.token to have one generated"
                )


def _legacy_token(settings: Settings) -> str | None:
    """Today's single token, when one is given (with chroma_tokens_dir it may be absent)."""
    given = settings.auth_token_file or os.environ.get(settings.auth_token_env, "").strip()
    return read_token(settings) if given else None


def _private_dir(directory: Path) -> None:
    """The tokens dir, created 0700; one that others may read is refused, never changed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        raise SettingsError(
            f"chroma_tokens_dir: {str(directory)!r} has mode {mode:o}, so others may read the "
            f"tokens in it; chmod 700 {directory}, then run again"
        )
    (directory / ".rotation").mkdir(mode=0o700, exist_ok=True)


def _client(
    directory: Path, name: str, role: str, legacy: str | None, overlap: int, now: float
) -> Client:
    if name == DEFAULT_CLIENT and legacy is not None:
        token = legacy
    else:
        token = _token_file(directory, name)
    previous, until = _rotation(directory / ".rotation" / f"{name}.json", token, overlap, now)
    return Client(name, role, token, previous, until)


def _token_file(directory: Path, name: str) -> str:
    """``<name>.token``: read (0600, a good token), or generated when missing."""
    path = directory / f"{name}.token"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SettingsError(
                f"chroma_tokens_dir: {str(path)!r} has mode {mode:o}; chmod 600 {path}, then "
                "run again"
            ) from None
        token = path.read_text().strip()
        if not TOKEN.match(token):
            raise SettingsError(
                f"chroma_tokens_dir: {str(path)!r} does not hold a token of 16 to 256 characters "
                "of A-Z a-z 0-9 . _ ~ + / = -; write one there, or remove the file to have one "
                "generated"
            ) from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w") as out:
        out.write(token + "\n")
        out.flush()
        os.fsync(out.fileno())
    return token


def _rotation(path: Path, token: str, overlap: int, now: float) -> tuple[str | None, int | None]:
    """The client's old value and the epoch second it stops being valid, while it is valid.

    The record is rewritten only when the value changed since the last deploy, so each run
    after a rotation declares the same expiry (a second run changes nothing).
    """
    try:
        seen = json.loads(path.read_text())
    except (OSError, ValueError):
        seen = {}
    if not isinstance(seen, dict):
        seen = {}
    if seen.get("value") != token:
        old = seen.get("value")
        seen = {"value": token, "previous": old, "since": int(now) if old else None}
        _write_private(path, json.dumps(seen))
    previous, since = seen.get("previous"), seen.get("since")
    if not isinstance(previous, str) or not TOKEN.match(previous) or not isinstance(since, int):
        return None, None
    until = since + overlap
    if now >= until:
        return None, None
    return previous, until


def _write_private(path: Path, content: str) -> None:
    """Written aside 0600 before any byte, then renamed into place."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.unlink(missing_ok=True)
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
