"""Every data key chroma-deploy reads, declared once: its type, default, meaning and check.

:class:`Settings` is a frozen dataclass. Each field is one data key (the key is ``chroma_``
plus the field's name) with its type, its default, its check and its description in one
declaration (:func:`key`). ``deploy.py``, ``drift.py`` and the tests all go through
:func:`load_settings`; the table of keys in docs/configuration.md
(``declaration/settings_table.py``) and schemas/data-keys.schema.json
(``declaration/settings_schema.py``, with pydantic) are generated from it and tests compare
both, so none of them can disagree.

Why not a pydantic model: importing pydantic costs about 80 ms of CPU in every run (every
deploy, drift check and backup), more than the whole check of every key; pydantic writes
the JSON Schema from these types instead, where only the tests and the generator pay for it.

A wrong value stops the run before any host changes, with one line that names the key, the
value and what is allowed (:class:`SettingsError`). Each check reads values the way pyinfra's
``--data`` writes them (``0750`` arrives as the int 750, ``true`` as True) and the way data
files do. Each kind of value (whole number, boolean, size, path) is read by one parser
(:data:`KINDS`) for every key of the kind, so a spelling means the same in each; a key
adds only its range or rule and its line (:class:`Check`).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from packaging.version import InvalidVersion, Version

from declaration.versions import version_line

PREFIX = "chroma_"
OLDEST_VERSION = Version("0.4.0")

# Dirs that must never become a project dir: the tool sets their owner and mode.
SYSTEM_DIRS = frozenset(
    {
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt",
        "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
        "/usr/local", "/var/lib", "/var/lib/docker", "/var/log",
    }
)  # fmt: skip

ImageSource = Literal["pull", "build", "auto", "ship"]
RestartPolicy = Literal["no", "always", "on-failure", "unless-stopped"]
TlsMode = Literal["off", "files", "internal-ca", "acme"]
MaintainRepair = Literal["orphans", "vacuum"]
Role = Literal["read", "write", "admin"]

_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
_COMPOSE_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ACCOUNT = re.compile(r"(?:[0-9]+|[a-z_][a-z0-9_.-]*\$?)")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_MODE = re.compile(r"0?[0-7]{3}")
# Characters a path may hold: none that a shell reads as more than a word (quotes,
# $, backtick, ; & | < > \, globs, control characters). Commands quote every value
# anyway; this refuses, before any host changes, values nobody means as a path.
_SAFE_PATH = re.compile(r"[A-Za-z0-9 /._+,@:=-]+")
SAFE_PATH_CHARS = "letters, digits, spaces and / . _ - + , @ : ="
_IMAGE_REPO = re.compile(
    r"[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
)
# A repository as above, then a tag, a digest or both (Docker's reference grammar).
_IMAGE_REF = re.compile(
    _IMAGE_REPO.pattern + r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?")
_OTEL_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._/-]*)?")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_ACME_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?")
_EMAIL = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_DNS_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
_ACME_NEEDS = ("chroma_auth_proxy=true", "chroma_tls=acme", "chroma_acme_email=ops@example.org")
_CLIENT_NAME = re.compile(r"[a-z0-9_-]{1,64}")
# The host's own checks and tools (the heartbeat, prove.py, a restore's verification).
HOST_TOOLS_CLIENT = "chroma-deploy"


class SettingsError(ValueError):
    """A data key has a value that is not allowed. The message is one line."""


class _Hidden(ValueError):
    """A refusal whose value must not be echoed: it holds a password."""


class _Said(ValueError):
    """A parser's refusal that says more than the key's line (a path's characters, '..'):
    :class:`Check` keeps its words."""


# --- one parser per kind of value. Each reads a spelling the same way for every key of
# its kind (raising ValueError for one it does not read); a key adds only its own rule
# (a range, a unit, "not a system dir") and its own line of what is allowed (:class:`Check`).
# pyinfra's --data has read a value already (digits are an int, "true" is True, JSON is
# parsed): these read what data files and inventories give as well.

_DIGITS = re.compile(r"[0-9]+")  # ASCII digits: int() would also take "+3", " 3", "3_0", "١٢"
_SIZE = re.compile(r"([0-9]+)([bkmg]?)")
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


def whole_number(value: Any) -> int:
    """An int (never a bool), or ASCII digits; ``030`` is 30, as pyinfra's --data reads it."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("not a whole number")


def boolean(value: Any) -> bool:
    """True or False; ``true``/``yes``/``1`` and ``false``/``no``/``0`` in any case, and the
    ints 1 and 0 (what pyinfra's --data makes of ``1`` and ``0``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError("not true or false")


def size(value: Any) -> str:
    """Digits above 0 and an optional unit b, k, m or g (any case), as compose writes it:
    ``10M`` is ``10m``; an int is bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    match = _SIZE.fullmatch(value.lower()) if isinstance(value, str) else None
    if not match or not int(match[1]):
        raise ValueError("not a size")
    return f"{int(match[1])}{match[2]}"


def path(value: Any) -> str:
    """An absolute path of safe characters, no part '..' or starting with '-', written with
    single slashes and no trailing one (``/srv//kb/`` is ``/srv/kb``)."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("not absolute")
    if not _SAFE_PATH.fullmatch(value) or any(part.startswith("-") for part in value.split("/")):
        raise _Said(f"an absolute path of {SAFE_PATH_CHARS} only, no part starting with '-'")
    normalised = "/" + "/".join(part for part in value.split("/") if part)
    if ".." in normalised.split("/"):
        raise _Said("an absolute path without '..'")
    return normalised


KINDS: dict[str, Callable[[Any], Any]] = {
    "whole number": whole_number,
    "boolean": boolean,
    "size": size,
    "path": path,
}


@dataclass(frozen=True)
class Check:
    """A key's check made from the parser of its kind, the key's own rule, and its line.

    ``allowed`` is what the refusal says to use, unless the parser said more (:class:`_Said`).
    """

    kind: str
    allowed: str
    rule: Callable[[Any], bool] = lambda value: True
    optional: bool = False  # None or "" means unset

    def __call__(self, value: Any) -> Any:
        if self.optional and value in (None, ""):
            return None
        try:
            parsed = KINDS[self.kind](value)
        except _Said:
            raise
        except ValueError:
            raise ValueError(self.allowed) from None
        if not self.rule(parsed):
            raise ValueError(self.allowed)
        return parsed


def _within(low: int, high: int) -> Callable[[Any], bool]:
    return lambda number: low <= number <= high


class _ProjectDir(Check):
    """The project dir: a path, and a dir of its own (never a system dir)."""

    def __call__(self, value: Any) -> Any:
        normalised = super().__call__(value)
        if normalised in SYSTEM_DIRS:
            raise ValueError(f"a dir of its own, not the system dir {normalised}")
        return normalised


_absolute_project_dir = _ProjectDir("path", "an absolute path such as /srv/chroma")
_absolute_path = Check("path", "an absolute path without '..'")
_port = Check("whole number", "a whole number from 1 to 65535", _within(1, 65535))
_seconds = Check("whole number", "a whole number of seconds from 10 to 3600", _within(10, 3600))
# chroma_stop_grace_seconds' default, also the typed targets' (declaration/targets.py).
STOP_GRACE_SECONDS = 60
_keep = Check(
    "whole number",
    "a whole number of backups from 0 (keep all) to 10000",
    _within(0, 10000),
)
_lock_timeout = Check(
    "whole number", "whole seconds from 0 (do not wait) to 86400", _within(0, 86400)
)
_positive_bytes = Check(
    "whole number",
    "a whole number of bytes above 0, e.g. 104857600 (100 MiB)",
    lambda number: number > 0,
)
_log_files = Check(
    "whole number", "a whole number of log files to keep, from 1 to 100", _within(1, 100)
)
_bool = Check("boolean", "true or false")
_memory = Check("size", "a size such as 2g, 512m or 1073741824 (bytes), at least 6m")
# Docker's json-file logger wants the unit written out.
_log_size = Check(
    "size",
    "a size with a unit such as 10m, 500k or 1g",
    lambda text: text[-1] in "kmg",
)


# --- value checks: each returns the clean value or raises ValueError(what is allowed).
# Every pattern above is used with fullmatch, so a trailing newline never passes.


def _compose_project(value: Any) -> str:
    if not isinstance(value, str) or not _COMPOSE_PROJECT.fullmatch(value):
        raise ValueError("lowercase letters, digits, '-' and '_', starting with a letter or digit")
    return value


def _version(value: Any) -> str:
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise ValueError("a pinned release such as 1.5.9 or 0.6.3 (never 'latest')")
    if Version(value) < OLDEST_VERSION:
        raise ValueError(f"{OLDEST_VERSION} or newer (older servers use another storage layout)")
    return value


def _ip_address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ValueError("an IP address such as 127.0.0.1 or 0.0.0.0") from None


def _account(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if not isinstance(value, str) or not _ACCOUNT.fullmatch(value):
        raise ValueError("an account name or a numeric id (unset: the connecting user)")
    return value


def _mode(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # pyinfra's --data turns "0750" into the int 750: read ints as written.
        value = str(value)
    if not isinstance(value, str) or not _MODE.fullmatch(value):
        raise ValueError("an octal mode written as a string, such as '0750'")
    mode = int(value, 8)
    if mode & 0o007:
        raise ValueError("a mode that gives others nothing (data is private), such as 0750")
    return f"{mode:o}"


def _plain_name(value: Any) -> str:
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or value in {".", ".."}:
        raise ValueError("a plain dir name (letters, digits, '.', '-', '_'; no '/')")
    return value


def _one_of(choices: Any) -> Callable[[Any], str]:
    """The check of a Literal type: one of its values."""
    allowed: tuple[str, ...] = get_args(choices)

    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError("one of " + ", ".join(allowed))
        return str(value)

    return check


def _or_unset(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The check of an optional key: None or "" means unset, anything else must pass."""
    if isinstance(check, Check):
        return replace(check, optional=True)

    def check_unless_unset(value: Any) -> Any:
        return None if value in (None, "") else check(value)

    return check_unless_unset


def _image_repository(value: Any) -> str:
    if not isinstance(value, str) or not _IMAGE_REPO.fullmatch(value):
        raise ValueError("an image name without tag, such as chromadb/chroma")
    return value


def _image_reference(value: Any) -> str:
    if value in (None, ""):
        raise ValueError("an image reference with a pinned tag")
    if not isinstance(value, str) or not _IMAGE_REF.fullmatch(value):
        raise ValueError("an image reference such as registry.example/app:1.2")
    if value.endswith(":latest") or ":" not in value.rsplit("/", 1)[-1]:
        raise ValueError("an image reference with a pinned tag (never 'latest')")
    return value


def _volume_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(name, str) and _PLAIN_NAME.fullmatch(name) for name in value
    ):
        raise ValueError("a list of volume names such as ['chroma_data']")
    return tuple(value)


def _volume_name(value: Any) -> str:
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value):
        raise ValueError("the full name of one volume, as `docker volume ls` shows it")
    return value


def _origins(value: Any) -> tuple[str, ...]:
    if value in (None, "", [], ()):
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(origin, str) and (origin == "*" or _ORIGIN.fullmatch(origin)) for origin in value
    ):
        raise ValueError("'*' or a list of origins such as ['https://app.example:8443']")
    if "*" in value and len(value) > 1:
        raise ValueError("either '*' alone or a list of origins, not both")
    return tuple(value)


def _acme_directory(value: Any) -> str:
    if not isinstance(value, str) or not _ACME_URL.fullmatch(value):
        raise ValueError("an https URL of an ACME directory, e.g. " + LETS_ENCRYPT)
    return value


def _email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.fullmatch(value):
        raise ValueError("an email address such as ops@example.org")
    return value


def _dns_names(value: Any) -> tuple[str, ...]:
    if value in (None, "", [], ()):
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(name, str) and _DNS_NAME.fullmatch(name) and not _is_address(name)
        for name in value
    ):
        raise ValueError("a list of DNS names such as ['kb.example.org'] (no address, no '*')")
    return tuple(dict.fromkeys(name.lower() for name in value))


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _otel_url(value: Any) -> str:
    if not isinstance(value, str) or not _OTEL_URL.fullmatch(value):
        raise ValueError("an http(s) URL of an OpenTelemetry collector, e.g. http://otel:4317")
    return value


def _cpus(value: Any) -> str:
    try:
        cpus = float(str(value))
    except ValueError:
        cpus = 0.0
    if not 0.01 <= cpus <= 1024 or isinstance(value, bool):
        raise ValueError("a number of CPUs from 0.01 to 1024, e.g. 1.5")
    return f"{cpus:g}"


def _environment_map(value: Any) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    if isinstance(value, tuple) and all(isinstance(pair, tuple) for pair in value):
        value = dict(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("a mapping of NAME: value, e.g. {'ALLOW_RESET': 'true'}") from None
        else:
            value = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str)
        and _ENV_NAME.fullmatch(name)
        and isinstance(v, str | int | float | bool)
        for name, v in value.items()
    ):
        raise ValueError("a mapping of NAME: value, e.g. {'ALLOW_RESET': 'true'}")
    return tuple(sorted((name, str(v)) for name, v in value.items()))


def _tokens(value: Any) -> tuple[tuple[str, str], ...]:
    """chroma_tokens: client name -> role, as a mapping, JSON or ``name=role,name=role``."""
    if not value:
        return ()
    if isinstance(value, tuple) and all(isinstance(pair, tuple) for pair in value):
        value = dict(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                json.loads(text)
                if text.startswith("{")
                else dict(part.split("=", 1) for part in text.split(",") if part.strip())
            )
        except ValueError:
            raise ValueError(_TOKENS_ALLOWED) from None
    if not isinstance(value, Mapping):
        raise ValueError(_TOKENS_ALLOWED)
    pairs = {str(name).strip(): role for name, role in value.items()}
    for name, role in pairs.items():
        if not _CLIENT_NAME.fullmatch(name):
            raise _Said(f"client names of 1 to 64 of a-z 0-9 _ - (not {name!r}); {_TOKENS_ALLOWED}")
        if name == HOST_TOOLS_CLIENT:
            raise _Said(f"another client name: {name!r} is the host's own checks' client")
        if role not in get_args(Role):
            raise _Said(f"a role of read, write or admin for {name!r} (not {role!r})")
    return tuple(sorted(pairs.items()))


_TOKENS_ALLOWED = 'a mapping of client name to read, write or admin, e.g. {"dashboard": "read"}'


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError("an environment variable name such as CHROMA_AUTH_TOKEN")
    return value


_RESTIC_SCHEMES = ("sftp:", "s3:", "rest:", "rclone:", "b2:", "azure:", "gs:", "swift:")
# A repository string reaches restic from a 0600 file (--repository-file), never a command
# line; these characters keep it one plain word in every message that names it.
_RESTIC_REPOSITORY = re.compile(r"[A-Za-z0-9/._+,@:=%~-]+")
_CREDENTIALS_IN_URL = re.compile(r"://[^/@]*:[^/@]*@")
_CRON_FIELD = re.compile(r"[0-9*][0-9*,/-]*")
_PERCENTAGE = re.compile(r"([0-9]{1,3})(\.[0-9]{1,2})?%")
_SNAPSHOT_ID = re.compile(r"[0-9a-f]{8,64}")
_keep_snapshots = Check(
    "whole number", "a whole number of snapshots from 0 to 10000", _within(0, 10000)
)


def _restic_repository(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a restic repository such as sftp:user@host:/srv/restic/kb or /mnt/backup")
    if _CREDENTIALS_IN_URL.search(value):
        raise _Hidden(
            "a repository without a password in it; give the backend's credentials to restic "
            "on the host, not in the repository string"
        )
    if not _RESTIC_REPOSITORY.fullmatch(value) or not (
        value.startswith("/") or value.startswith(_RESTIC_SCHEMES)
    ):
        raise ValueError(
            "a restic repository such as sftp:user@host:/srv/restic/kb, an absolute path, or "
            "s3:, rest:, rclone:, b2:, azure:, gs:, swift: (letters, digits and / . _ + , @ : = "
            "% ~ - only)"
        )
    return path(value) if value.startswith("/") else value


def _cron_schedule(value: Any) -> str:
    if value in ("auto", "off"):
        return str(value)
    fields_ = value.split() if isinstance(value, str) else []
    if len(fields_) != 5 or not all(_CRON_FIELD.fullmatch(field_) for field_ in fields_):
        raise ValueError("five cron fields such as '30 2 * * *', 'auto' or 'off'")
    return " ".join(fields_)


def _percentage(value: Any) -> str:
    match = _PERCENTAGE.fullmatch(value) if isinstance(value, str) else None
    if not match or float(value[:-1]) > 100:
        raise ValueError("a percentage from 0% to 100%, such as 5% or 2.5%")
    return value


def _snapshot_id(value: Any) -> str:
    if value == "latest" or (isinstance(value, str) and _SNAPSHOT_ID.fullmatch(value)):
        return str(value)
    raise ValueError("'latest' or a snapshot id (8 to 64 hex digits, as restic snapshots shows)")


def key(
    default: Any,
    check: Callable[[Any], Any],
    description: str,
    *,
    example: str,
    example_with: tuple[str, ...] = (),
    core: bool = False,
    written_as: Any = None,
) -> Any:
    """Declare one data key: its default, the check of its value, and what it means.

    example: a value as written after ``--data chroma_<name>=`` (docs/configuration.md
    shows it; a test reads it through every entry point); example_with: the other
    ``KEY=VALUE`` it needs to be accepted. core: always defined, other tools may rely on
    it. written_as: the type to write in data files, for the JSON Schema, when it is not
    the attribute's own type. The kind (whole number, boolean, size, path) is the check's.
    """
    kind = check.kind if isinstance(check, Check) else None
    metadata = {"check": check, "kind": kind, "description": description, "core": core}
    return field(
        default=default,
        metadata={
            **metadata,
            "example": example,
            "example_with": example_with,
            "written_as": written_as,
        },
    )


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one host. Attribute names are the keys without prefix.

    Each field is one data key, ``chroma_`` plus its name: its type, default, check and
    description. Made only by :func:`load_settings`; ``dataclasses.replace`` gives a changed
    copy (unchecked).
    """

    # Where the stack lives, and what it is called.
    project_dir: str = key(
        "/srv/chroma",
        _absolute_project_dir,
        "Absolute dir holding docker-compose.yml and the data dirs.",
        core=True,
        example="/srv/kb",
    )
    compose_project: str = key(
        "chroma",
        _compose_project,
        "Compose project name, written into the file so it cannot drift with the dir name "
        "(a drift orphans volumes).",
        core=True,
        example="kb",
    )
    # What runs.
    version: str = key(
        "1.5.9",
        _version,
        "Chroma image tag; decides the persist path, heartbeat and healthcheck.",
        core=True,
        example="0.6.3",
    )
    image: str = key(
        "chromadb/chroma",
        _image_repository,
        "Image repository; the tag is chroma_version.",
        example="registry.example/chroma",
    )
    image_source: ImageSource = key(
        "pull",
        _one_of(ImageSource),
        "When the image is missing: pull it, build it from the chromadb wheel on PyPI, auto "
        "(pull, else build), or ship the control machine's image (also when the host's has "
        "another id).",
        example="auto",
    )
    image_build_dir: str = key(
        "/var/cache/chroma-deploy/image-build",
        _absolute_path,
        "Where a local image build keeps its rootfs and wheels on the host.",
        example="/var/cache/kb-build",
    )
    # How it is reached.
    port: int = key(8000, _port, "Host port Chroma is published on.", core=True, example="8001")
    bind_address: str = key(
        "127.0.0.1",
        _ip_address,
        "Host address the port is published on; loopback unless you mean it.",
        core=True,
        example="::1",
    )
    allow_unauthenticated_public_port: bool = key(
        False,
        _bool,
        "Accept publishing Chroma on a non-loopback address with no authentication in front "
        "of it (Chroma 1.x has none of its own).",
        example="true",
    )
    restart_policy: RestartPolicy = key(
        "unless-stopped",
        _one_of(RestartPolicy),
        "Compose restart policy of the chroma service.",
        example="always",
    )
    wait_timeout: int = key(
        120,
        _seconds,
        "Seconds `docker compose up --wait` may take to reach healthy.",
        example="300",
    )
    stop_grace_seconds: int = key(
        STOP_GRACE_SECONDS,
        _seconds,
        "Seconds Chroma has to flush and exit after SIGTERM before it is killed, in every "
        "stop (compose stop_grace_period; Docker's default is 10): a server killed mid-flush "
        "can corrupt a segment.",
        example="120",
    )
    # Who owns the data: a name, or a numeric id (--data and inventories give it as an int).
    owner: str | None = key(
        None,
        _account,
        "Owner of the project and data dirs, and the uid Chroma runs as (name or numeric id; "
        "unset: the connecting user).",
        core=True,
        written_as=str | int | None,
        example="chroma",
    )
    group: str | None = key(
        None,
        _account,
        "Group of the project and data dirs (name or numeric id; unset: the owner's primary "
        "group).",
        core=True,
        written_as=str | int | None,
        example="1000",
    )
    create_owner: bool = key(
        False,
        _bool,
        "Create chroma_owner as a system account (no login, no home; its own group unless "
        "chroma_group names one) when it has none, before the dirs.",
        example="true",
        example_with=("chroma_owner=chroma",),
    )
    # Written "0750"; --data gives the int 750, read as written. Normalised to "750".
    dir_mode: str = key("0750", _mode, "Mode of the project dir.", example="0700")
    data_dir_mode: str = key("0750", _mode, "Mode of each data dir.", example="0700")
    data_dir: str = key(
        "chroma_data",
        _plain_name,
        "Dir (in the project dir) bind-mounted at the server's persist path.",
        example="vectors",
    )
    fallback_dir: str = key(
        "chroma_db",
        _plain_name,
        "Dir for the application's fallback PersistentClient.",
        example="fallback",
    )
    logs_dir: str = key("logs", _plain_name, "Dir for logs.", example="log")
    manage_gitignore: bool = key(
        True,
        _bool,
        "Add .gitignore lines that keep the data dirs but not their contents.",
        example="false",
    )
    # The optional application service (the seed's knowledge-base-agent).
    app_enabled: bool = key(
        False,
        _bool,
        "Run the application service too.",
        example="true",
        example_with=("chroma_app_image=registry.example/kb-agent:1.2",),
    )
    app_image: str | None = key(
        None,
        _or_unset(_image_reference),
        "Image of the application service (required when it is enabled).",
        example="registry.example/kb-agent:1.2",
    )
    app_name: str = key(
        "knowledge-base-agent",
        _compose_project,
        "Compose service name of the application.",
        example="kb-agent",
    )
    # Authentication: Chroma 1.x has none of its own, so a proxy checks a token.
    auth_proxy: bool = key(
        False,
        _bool,
        "Put an authenticating reverse proxy (Debian's nginx) in front of Chroma: only the "
        "proxy is published, on chroma_bind_address:chroma_port, and it wants the token as "
        "`X-Chroma-Token` or `Authorization: Bearer`.",
        example="true",
    )
    auth_token_env: str = key(
        "CHROMA_AUTH_TOKEN",
        _env_name,
        "Environment variable on the control machine holding the token (16 to 256 characters of "
        "A-Z a-z 0-9 . _ ~ + / = -). Never a command-line value.",
        example="KB_CHROMA_TOKEN",
    )
    auth_token_file: str | None = key(
        None,
        _or_unset(_absolute_path),
        "File on the control machine holding the token; wins over the environment variable.",
        example="/etc/kb/chroma-token",
    )
    tokens: tuple[tuple[str, str], ...] = key(
        (),
        _tokens,
        "A token per client, with a role: client name ([a-z0-9_-]) -> read (get, query, count, "
        "search), write (read, records and collections) or admin (everything: reset, tenants, "
        "databases, /docs). Values live in chroma_tokens_dir. The token of chroma_auth_token_env "
        "or chroma_auth_token_file, when given, is client `default` (role write unless named "
        "here).",
        written_as=dict[str, Role],
        example='{"ingest": "write", "dashboard": "read"}',
        example_with=("chroma_auth_proxy=true", "chroma_tokens_dir=/etc/kb/tokens"),
    )
    tokens_dir: str | None = key(
        None,
        _or_unset(_absolute_path),
        "Dir (0700) on the control machine of one 0600 `<client>.token` per client, generated "
        "when missing; also the application service's and the host's own checks' tokens.",
        example="/etc/kb/tokens",
        example_with=("chroma_auth_proxy=true",),
    )
    token_overlap_seconds: int = key(
        86400,
        Check(
            "whole number",
            "a whole number of seconds from 0 to 2592000 (30 days)",
            _within(0, 2592000),
        ),
        "After a client's token file gets a new value, its old value stays valid this long "
        "(left out by the first deploy after that; drift reports an old value kept past it).",
        example="3600",
    )
    proxy_image: str = key(
        "chroma-deploy/auth-proxy:9",
        _image_reference,
        "Image of the proxy, built on the host from files/build-proxy-image.sh when missing.",
        example="registry.example/auth-proxy:9",
    )
    secrets_dir: str = key(
        "secrets",
        _plain_name,
        "Dir (mode 0700, in the project dir) of the host's 0600 secret files: the proxy's "
        "clients, the host's checks' and the application's tokens, the TLS key.",
        example="keys",
    )
    # TLS on the proxy (docs/security.md, "TLS").
    tls: TlsMode = key(
        "off",
        _one_of(TlsMode),
        "TLS on the auth proxy's published port: off (plain HTTP; beyond loopback only with "
        "chroma_allow_plain_http), files (your certificate and key), internal-ca (a private CA "
        "on the control machine issues one per host), acme (an ACME CA such as Let's Encrypt, "
        "by HTTP-01, with lego on the host).",
        example="internal-ca",
        example_with=("chroma_auth_proxy=true", "chroma_tls_ca_dir=/etc/kb/ca"),
    )
    allow_plain_http: bool = key(
        False,
        _bool,
        "Accept the proxy on a non-loopback address without TLS: the token crosses the network "
        "in clear text (a VPN or a private link only).",
        example="true",
    )
    tls_cert_file: str | None = key(
        None,
        _or_unset(_absolute_path),
        "chroma_tls=files: the certificate (PEM, with its chain) on the control machine.",
        example="/etc/kb/tls/cert.pem",
        example_with=(
            "chroma_auth_proxy=true",
            "chroma_tls=files",
            "chroma_tls_key_file=/etc/kb/tls/key.pem",
        ),
    )
    tls_key_file: str | None = key(
        None,
        _or_unset(_absolute_path),
        "chroma_tls=files: its private key (PEM) on the control machine; shipped 0600, never "
        "printed.",
        example="/etc/kb/tls/key.pem",
        example_with=(
            "chroma_auth_proxy=true",
            "chroma_tls=files",
            "chroma_tls_cert_file=/etc/kb/tls/cert.pem",
        ),
    )
    tls_ca_dir: str | None = key(
        None,
        _or_unset(_absolute_path),
        "chroma_tls=internal-ca: dir on the control machine of the private CA (created once, "
        "kept: losing it means re-issuing every host's certificate); clients trust its ca.pem.",
        example="/etc/kb/ca",
        example_with=("chroma_auth_proxy=true", "chroma_tls=internal-ca"),
    )
    tls_renew_days: int = key(
        30,
        Check("whole number", "a whole number of days from 1 to 3650", _within(1, 3650)),
        "A host certificate that expires within this many days is issued again (internal-ca; "
        "acme: by the host's schedule) and reported by drift.",
        example="14",
    )
    # chroma_tls=acme: lego on the host (docs/security.md, "ACME").
    acme_directory: str = key(
        LETS_ENCRYPT,
        _acme_directory,
        "chroma_tls=acme: the ACME CA's directory URL (Let's Encrypt's production one by "
        "default; its staging one, or a private ACME CA).",
        example="https://acme-staging-v02.api.letsencrypt.org/directory",
        example_with=_ACME_NEEDS,
    )
    acme_email: str | None = key(
        None,
        _or_unset(_email),
        "chroma_tls=acme: the ACME account's contact address (lego registers with it).",
        example="ops@example.org",
        example_with=("chroma_auth_proxy=true", "chroma_tls=acme"),
    )
    acme_domains: tuple[str, ...] = key(
        (),
        _dns_names,
        "chroma_tls=acme: the certificate's DNS names, each resolving to the host (the CA asks "
        "each at port 80); unset: the inventory's host name.",
        example='["kb.example.org"]',
        example_with=_ACME_NEEDS,
    )
    acme_http_port: int = key(
        80,
        _port,
        "chroma_tls=acme: the host port lego answers HTTP-01 on while it runs; the CA asks port "
        "80: another only where port 80 is forwarded to it.",
        example="8080",
        example_with=_ACME_NEEDS,
    )
    acme_ca_file: str | None = key(
        None,
        _or_unset(_absolute_path),
        "chroma_tls=acme: PEM bundle on the control machine that the ACME server's own HTTPS "
        "certificate verifies with (a private ACME CA); unset: the host's trust store.",
        example="/etc/kb/acme-ca.pem",
        example_with=_ACME_NEEDS,
    )
    # Running Chroma in production (server settings and container limits).
    cors_allow_origins: tuple[str, ...] = key(
        (),
        _origins,
        "Origins browser apps may call Chroma from ('*' or a list); unset: no CORS headers.",
        example='["https://app.example"]',
    )
    max_payload_bytes: int | None = key(
        None,
        _or_unset(_positive_bytes),
        "Largest request body Chroma 1.x accepts (its default: 41943040, 40 MiB).",
        example="104857600",
    )
    otel_endpoint: str | None = key(
        None,
        _or_unset(_otel_url),
        "OpenTelemetry collector Chroma 1.x sends traces to, e.g. http://otel:4317.",
        example="http://otel:4317",
    )
    otel_service_name: str | None = key(
        None,
        _or_unset(_plain_name),
        "Service name in those traces (needs chroma_otel_endpoint).",
        example="kb",
        example_with=("chroma_otel_endpoint=http://otel:4317",),
    )
    mem_limit: str | None = key(
        None,
        _or_unset(_memory),
        "Memory cap of the Chroma container (compose mem_limit), e.g. 2g; unset: none.",
        written_as=str | int | None,
        example="2g",
    )
    cpus: str | None = key(
        None,
        _or_unset(_cpus),
        "CPUs the Chroma container may use (compose cpus), e.g. 1.5; unset: no limit.",
        written_as=float | str | None,
        example="1.5",
    )
    log_max_size: str = key(
        "10m",
        _log_size,
        "Size at which each container's json-file log is rotated.",
        example="50m",
    )
    log_max_files: int = key(
        5, _log_files, "Rotated json-file logs kept per container.", example="3"
    )
    env: tuple[tuple[str, str], ...] = key(
        (),
        _environment_map,
        "Extra environment for the Chroma server (a mapping); names the version does not "
        "read, or ignores, are refused with what to use instead.",
        written_as=dict[str, str | int | float | bool],
        example='{"CHROMA_ALLOW_RESET": "true"}',
    )
    upgrade_rehearsal: bool = key(
        True,
        _bool,
        "Before an upgrade touches the live stack, start the new version on a copy of the "
        "data and compare it with the backup; a mismatch stops the upgrade.",
        example="false",
    )
    telemetry: bool = key(
        False,
        _bool,
        "Let a 0.x server send Chroma's anonymized product telemetry (off by default).",
        example="true",
        example_with=("chroma_version=0.6.3",),
    )
    # The engine.
    install_docker: bool = key(
        True,
        _bool,
        "Install Docker Engine and the Compose v2 plugin when missing.",
        example="false",
    )
    # Data safety.
    legacy_volumes: tuple[str, ...] = key(
        ("chroma_data",),
        _volume_names,
        "Named volumes (any compose project prefix) that may hold data from a setup before "
        "bind mounts.",
        example="old_chroma_data,chroma_data",
    )
    adopt_volume: str | None = key(
        None,
        _or_unset(_volume_name),
        "A named volume of another compose project (or of none) to migrate into this "
        "project's data dir; by default only this project's own volumes are taken.",
        example="other_chroma_data",
    )
    accept_failed_verification: bool = key(
        False,
        _bool,
        "Go on after a migration or upgrade failed its verification (the failed-* records "
        "become accepted-*); by default such a host is not deployed until you act.",
        example="true",
    )
    allow_empty_data_dir: bool = key(
        False,
        _bool,
        "Start a server on an empty data dir although a copy of it was moved aside (an "
        "unfinished restore or a failed migration), or the data dir was moved away while "
        "Chroma ran (then Chroma starts again, on the empty one), or it holds segment dirs "
        "beside no database, or one that names none of them (another stack's put back), or "
        "one SQLite cannot read.",
        example="true",
    )
    lock_timeout: int = key(
        300,
        _lock_timeout,
        "Seconds a deploy, backup, restore or proof waits for another run on the same project "
        "to finish before it fails, naming that run.",
        example="30",
    )
    backup_dir: str = key(
        "/var/backups/chroma-deploy",
        _absolute_path,
        "Where backup.py writes archives (<project>-<UTC time>.tar.gz, .sha256, .json).",
        example="/var/backups/kb",
    )
    backup_keep: int = key(
        0,
        _keep,
        "How many of this project's newest backups to keep; 0 keeps all. Pruning older ones "
        "is the only deletion chroma-deploy ever does, and only when you set this.",
        example="7",
    )
    restore_archive: str | None = key(
        None,
        _or_unset(_absolute_path),
        "The archive restore.py restores (a path on the host, from backup.py).",
        example="/var/backups/chroma-deploy/chroma-20261125T041509Z.tar.gz",
    )
    # Off-host backups with restic (docs/offsite-backups.md).
    backup_repository: str | None = key(
        None,
        _or_unset(_restic_repository),
        "A restic repository off this host that backups go to, encrypted: "
        "sftp:user@host:/path or a mounted path (both tested), or s3:, rest:, rclone:, b2:, "
        "azure:, gs:, swift: (passed to restic as written). Unset: local archives only.",
        example="sftp:backup@vault.example:/srv/restic/kb",
        example_with=(
            "chroma_backup_password_file=/etc/kb/restic-password",
            "chroma_backup_ssh_key=/etc/kb/restic-ssh-key",
            "chroma_backup_known_hosts=/etc/kb/restic-known-hosts",
        ),
    )
    backup_password_file: str | None = key(
        None,
        _or_unset(_absolute_path),
        "File on the control machine holding the repository's password; shipped to the host "
        "0600, never on a command line, in an environment or in any output.",
        example="/etc/kb/restic-password",
        example_with=("chroma_backup_repository=/mnt/backup/restic",),
    )
    backup_ssh_key: str | None = key(
        None,
        _or_unset(_absolute_path),
        "Private key file on the control machine that opens an sftp: repository; shipped to "
        "the host 0600.",
        example="/etc/kb/restic-ssh-key",
        example_with=(
            "chroma_backup_repository=sftp:backup@vault.example:/srv/restic/kb",
            "chroma_backup_password_file=/etc/kb/restic-password",
            "chroma_backup_ssh_key=/etc/kb/restic-ssh-key",
            "chroma_backup_known_hosts=/etc/kb/restic-known-hosts",
        ),
    )
    backup_known_hosts: str | None = key(
        None,
        _or_unset(_absolute_path),
        "File on the control machine with the sftp: repository host's known_hosts line(s): "
        "its host key is pinned, never accepted blindly.",
        example="/etc/kb/restic-known-hosts",
        example_with=(
            "chroma_backup_repository=sftp:backup@vault.example:/srv/restic/kb",
            "chroma_backup_password_file=/etc/kb/restic-password",
            "chroma_backup_ssh_key=/etc/kb/restic-ssh-key",
            "chroma_backup_known_hosts=/etc/kb/restic-known-hosts",
        ),
    )
    backup_schedule: str = key(
        "auto",
        _cron_schedule,
        "When the host backs itself up to the repository, without the control machine: five "
        "cron fields, 'auto' (daily at 03:MM, MM from the host name, so a fleet spreads over "
        "the hour) or 'off'.",
        example="30 2 * * *",
        example_with=(
            "chroma_backup_repository=/mnt/backup/restic",
            "chroma_backup_password_file=/etc/kb/restic-password",
        ),
    )
    backup_keep_daily: int = key(
        0,
        _keep_snapshots,
        "Daily snapshots of this project and host to keep (restic forget --keep-daily); "
        "0 with the weekly and monthly ones 0 too keeps all.",
        example="7",
    )
    backup_keep_weekly: int = key(
        0, _keep_snapshots, "Weekly snapshots to keep (--keep-weekly).", example="4"
    )
    backup_keep_monthly: int = key(
        0, _keep_snapshots, "Monthly snapshots to keep (--keep-monthly).", example="6"
    )
    backup_check_subset: str = key(
        "5%",
        _percentage,
        "Share of the repository's data a weekly restic check reads back (--read-data-subset); "
        "0% checks the structure only.",
        example="10%",
    )
    restore_snapshot: str | None = key(
        None,
        _or_unset(_snapshot_id),
        "The snapshot restore.py restores from chroma_backup_repository: 'latest' (this "
        "project's newest that holds records, this host's own first) or a snapshot id.",
        example="latest",
        example_with=(
            "chroma_backup_repository=/mnt/backup/restic",
            "chroma_backup_password_file=/etc/kb/restic-password",
        ),
    )
    restore_drill: bool = key(
        False,
        _bool,
        "prove.py runs the restore drill instead of the persistence proof: the latest snapshot "
        "restored into a throwaway dir and container, checked against its manifest, removed.",
        example="true",
        example_with=(
            "chroma_backup_repository=/mnt/backup/restic",
            "chroma_backup_password_file=/etc/kb/restic-password",
        ),
    )
    # maintain.py (docs/maintenance.md).
    maintain_apply: MaintainRepair | None = key(
        None,
        _or_unset(_one_of(MaintainRepair)),
        "The repair maintain.py's pyinfra run makes (set by maintain.py --apply, not by hand): "
        "'orphans' or 'vacuum'; unset: none.",
        example="orphans",
    )
    maintain_schedule: str = key(
        "off",
        _cron_schedule,
        "When the host writes maintain.py's read-only report as Prometheus metrics "
        "(/var/lib/chroma-deploy/metrics/<project>-maintain.prom): five cron fields, 'auto' "
        "(hourly at minute MM, MM from the host name) or 'off'.",
        example="auto",
    )

    @property
    def image_ref(self) -> str:
        return f"{self.image}:{self.version}"

    @property
    def compose_path(self) -> str:
        return f"{self.project_dir}/docker-compose.yml"

    @property
    def data_dirs(self) -> tuple[str, ...]:
        """Names of the dirs under the project dir, in the order they are declared."""
        return (self.data_dir, self.fallback_dir, self.logs_dir)

    def path(self, name: str) -> str:
        return f"{self.project_dir}/{name}"


# Every data key and its default, in the order declared (and checked, and documented).
DEFAULTS = {PREFIX + declared.name: declared.default for declared in fields(Settings)}
KEYS = tuple(DEFAULTS)


def load_settings(data: Any) -> Settings:
    """Validate every ``chroma_*`` key of a host's data and return the settings.

    ``data`` is ``host.data`` (or any mapping). Keys with another prefix belong
    to pyinfra or the user and are ignored; an unknown ``chroma_`` key is an
    error, because a typo would otherwise silently fall back to a default.
    A key set to None takes its default.
    """
    keys = [key for key in _keys(data) if key.startswith(PREFIX)]
    _refuse_server_auth_keys(data, keys)
    for key in keys:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingsError(
                f"{key}: unknown data key{hint}; see the keys in docs/configuration.md"
            )
    values: dict[str, Any] = {}
    for declared in fields(Settings):
        raw = data.get(PREFIX + declared.name)
        raw = declared.default if raw is None else raw
        try:
            values[declared.name] = declared.metadata["check"](raw)
        except ValueError as allowed:
            shown = "a value with a password in it" if isinstance(allowed, _Hidden) else repr(raw)
            raise SettingsError(
                f"{PREFIX}{declared.name}: {shown} is not allowed; use {allowed}"
            ) from None
    settings = Settings(**values)
    _check_together(settings)
    return settings


# Chroma 0.x's own auth settings, as data keys. 1.x servers ignore them without
# a word, so an upgraded stack would lose its authentication silently.
SERVER_AUTH_KEYS = (
    "chroma_server_authn_provider",
    "chroma_server_authn_credentials",
    "chroma_server_authn_credentials_file",
    "chroma_server_auth_provider",
    "chroma_server_auth_credentials",
    "chroma_server_auth_token_transport_header",
)


def _refuse_server_auth_keys(data: Any, keys: list[str]) -> None:
    found = [key for key in keys if key in SERVER_AUTH_KEYS]
    if not found:
        return
    version = str(data.get("chroma_version") or Settings.version)
    try:
        has_no_auth = Version(version) >= Version("1.0.0")
    except InvalidVersion:
        has_no_auth = False
    if has_no_auth:
        raise SettingsError(
            f"{found[0]}: a Chroma 0.x auth setting, and Chroma {version} has no built-in "
            "authentication, so it would be ignored and the server left open; use "
            "chroma_auth_proxy=true with a token instead"
        )
    raise SettingsError(
        f"{found[0]}: chroma-deploy does not pass Chroma 0.x auth settings, because an upgrade "
        "to 1.x would drop them silently; use chroma_auth_proxy=true with a token instead"
    )


def _check_together(settings: Settings) -> None:
    """Rules that involve more than one key."""
    if len({*settings.data_dirs, settings.secrets_dir}) != len(settings.data_dirs) + 1:
        raise SettingsError(
            "chroma_data_dir, chroma_fallback_dir, chroma_logs_dir, chroma_secrets_dir: they must "
            "be four different names; give each dir a name of its own"
        )
    if settings.app_enabled and not settings.app_image:
        raise SettingsError(
            "chroma_app_enabled: True needs chroma_app_image; set chroma_app_image to the image "
            "of the application service"
        )
    if (
        not ipaddress.ip_address(settings.bind_address).is_loopback
        and not settings.auth_proxy
        and not settings.allow_unauthenticated_public_port
    ):
        raise SettingsError(
            f"chroma_bind_address: {settings.bind_address} would publish Chroma, which has no "
            "authentication, beyond this machine; keep 127.0.0.1, set chroma_auth_proxy=true, "
            "or set chroma_allow_unauthenticated_public_port=true if a firewall protects it"
        )
    _check_tls(settings)
    _check_tokens(settings)
    if settings.create_owner and (settings.owner is None or settings.owner.isdigit()):
        raise SettingsError(
            f"chroma_create_owner: true needs chroma_owner to name the account, got "
            f"{settings.owner!r}; set chroma_owner=<name>, or chroma_create_owner=false"
        )
    if settings.create_owner and settings.group is not None and settings.group.isdigit():
        raise SettingsError(
            f"chroma_create_owner: true needs chroma_group unset or a group name, got "
            f"{settings.group!r}; name the group, or leave chroma_group unset"
        )
    _check_server_settings(settings)
    _check_backup_repository(settings)
    if settings.app_name == "chroma":
        raise SettingsError(
            "chroma_app_name: 'chroma' is not allowed, the Chroma service uses it; choose another"
        )


def _check_tls(settings: Settings) -> None:
    """TLS on the proxy, and no token in clear text beyond loopback (docs/security.md)."""
    tls = settings.tls
    if tls != "off" and not settings.auth_proxy:
        raise SettingsError(
            f"chroma_tls: {tls} needs chroma_auth_proxy=true (the proxy serves TLS); set it, "
            "or chroma_tls=off"
        )
    files = (("chroma_tls_cert_file", settings.tls_cert_file),
             ("chroma_tls_key_file", settings.tls_key_file))  # fmt: skip
    for name, value in files:
        if tls == "files" and not value:
            raise SettingsError(
                f"{name}: chroma_tls=files needs it; name the file on the control machine"
            )
        if value and tls != "files":
            raise SettingsError(
                f"{name}: only chroma_tls=files uses it, and chroma_tls is {tls}; set "
                "chroma_tls=files, or leave it unset"
            )
    if tls == "internal-ca" and not settings.tls_ca_dir:
        raise SettingsError(
            "chroma_tls_ca_dir: chroma_tls=internal-ca needs it; name a dir on the control "
            "machine for the private CA (created there once, keep it)"
        )
    if settings.tls_ca_dir and tls != "internal-ca":
        raise SettingsError(
            f"chroma_tls_ca_dir: only chroma_tls=internal-ca uses it, and chroma_tls is {tls}; "
            "set chroma_tls=internal-ca, or leave it unset"
        )
    _check_acme(settings)
    if (
        settings.auth_proxy
        and tls == "off"
        and not ipaddress.ip_address(settings.bind_address).is_loopback
        and not settings.allow_plain_http
    ):
        raise SettingsError(
            f"chroma_tls: off would send the token in clear text to {settings.bind_address}; "
            "set chroma_tls=internal-ca (or files), keep chroma_bind_address=127.0.0.1, or set "
            "chroma_allow_plain_http=true if only a trusted network (a VPN) reaches it"
        )


def _check_acme(settings: Settings) -> None:
    """chroma_tls=acme: the account's address, and lego's HTTP-01 port apart from the proxy's."""
    if settings.tls == "acme" and not settings.acme_email:
        raise SettingsError(
            "chroma_acme_email: chroma_tls=acme needs it (lego registers the ACME account with "
            "it); set chroma_acme_email=<your address>"
        )
    if settings.tls == "acme" and settings.acme_http_port == settings.port:
        raise SettingsError(
            f"chroma_acme_http_port: {settings.port} is chroma_port, where the proxy listens; "
            "lego answers HTTP-01 on a port of its own: keep 80, or name a free port"
        )
    if settings.tls == "acme":
        return
    for name in ("acme_directory", "acme_email", "acme_domains", "acme_http_port", "acme_ca_file"):
        if getattr(settings, name) != DEFAULTS[PREFIX + name]:
            raise SettingsError(
                f"chroma_{name}: only chroma_tls=acme uses it, and chroma_tls is {settings.tls}; "
                "set chroma_tls=acme, or leave it unset"
            )


def _check_tokens(settings: Settings) -> None:
    """A token per client (docs/security.md, "Clients and roles")."""
    if settings.tokens and not settings.auth_proxy:
        raise SettingsError(
            "chroma_tokens: clients need chroma_auth_proxy=true (the proxy checks their tokens); "
            "set it, or leave chroma_tokens unset"
        )
    if settings.tokens and not settings.tokens_dir:
        raise SettingsError(
            "chroma_tokens_dir: chroma_tokens needs it; name a dir on the control machine for "
            "the clients' token files (created 0700, each token generated there when missing)"
        )
    if settings.tokens_dir and not settings.auth_proxy:
        raise SettingsError(
            "chroma_tokens_dir: only the auth proxy uses it, and chroma_auth_proxy is false; set "
            "chroma_auth_proxy=true, or leave chroma_tokens_dir unset"
        )
    if settings.app_enabled and settings.app_name == HOST_TOOLS_CLIENT and settings.tokens_dir:
        raise SettingsError(
            f"chroma_app_name: {HOST_TOOLS_CLIENT!r} is the host's own checks' client name; "
            "choose another"
        )


def _keys(data: Mapping[str, Any]) -> list[str]:
    # pyinfra's HostData is not a Mapping; its dict() gives every layer merged.
    if hasattr(data, "dict"):
        return list(data.dict())
    return list(data)


def _check_server_settings(settings: Settings) -> None:
    """Server keys that exist on one version line only, and the extra environment."""
    line = version_line(settings.version)
    if line.name == "0.x":
        for key, value in (
            ("chroma_max_payload_bytes", settings.max_payload_bytes),
            ("chroma_otel_endpoint", settings.otel_endpoint),
            ("chroma_otel_service_name", settings.otel_service_name),
        ):
            if value is not None:
                raise SettingsError(
                    f"{key}: a Chroma 1.x setting, and chroma_version={settings.version} would "
                    "ignore it; upgrade, or leave it unset"
                )
    elif settings.telemetry:
        raise SettingsError(
            f"chroma_telemetry: true, but Chroma {settings.version} sends no anonymized "
            "telemetry, so there is nothing to turn on; leave it unset"
        )
    if settings.otel_service_name and not settings.otel_endpoint:
        raise SettingsError("chroma_otel_service_name: needs chroma_otel_endpoint; set both")
    if settings.otel_endpoint and settings.auth_proxy:
        # Chroma's only network is internal (docs/security.md): its spans would go nowhere.
        raise SettingsError(
            "chroma_otel_endpoint: behind the auth proxy Chroma is on an internal network with "
            "no route out and could not reach the collector; leave chroma_otel_endpoint unset, "
            "or set chroma_auth_proxy=false"
        )
    for name, value in settings.env:
        refusal = line.refuse_env(name, value)
        if refusal:
            raise SettingsError(f"chroma_env: {name}: {refusal}")


def _check_backup_repository(settings: Settings) -> None:
    """The off-host backup keys that go together (docs/offsite-backups.md)."""
    repository = settings.backup_repository
    sftp = bool(repository and repository.startswith("sftp:"))
    if repository and not settings.backup_password_file:
        raise SettingsError(
            "chroma_backup_password_file: chroma_backup_repository needs the repository's "
            "password; name a file on the control machine that holds it"
        )
    for key_, value in (("ssh_key", settings.backup_ssh_key),
                        ("known_hosts", settings.backup_known_hosts)):  # fmt: skip
        if sftp and not value:
            raise SettingsError(
                f"chroma_backup_{key_}: an sftp: repository needs it (the key that opens the "
                "repository host, and its pinned host key); name the file on the control machine"
            )
        if value and not sftp:
            raise SettingsError(
                f"chroma_backup_{key_}: only an sftp: repository uses it, and "
                f"chroma_backup_repository is {repository!r}; leave it unset"
            )
    if settings.backup_password_file and not repository:
        raise SettingsError(
            "chroma_backup_password_file: set, but chroma_backup_repository is not; name the "
            "repository, or leave the password file unset"
        )
    if settings.backup_schedule not in ("auto", "off") and not repository:
        raise SettingsError(
            f"chroma_backup_schedule: '{settings.backup_schedule}' schedules backups to "
            "chroma_backup_repository, which is not set; set it, or leave the schedule unset"
        )
    if settings.restore_snapshot and not repository:
        raise SettingsError(
            "chroma_restore_snapshot: needs chroma_backup_repository (and its password file) to "
            "restore from; set them as the host that backed up had them"
        )
    if settings.restore_drill and not repository:
        raise SettingsError(
            "chroma_restore_drill: needs chroma_backup_repository (and its password file) to "
            "restore the latest snapshot from; set them, or leave chroma_restore_drill unset"
        )
    if settings.restore_snapshot and settings.restore_archive:
        raise SettingsError(
            "chroma_restore_snapshot: set together with chroma_restore_archive; restore one: "
            "a snapshot from the repository, or a local archive"
        )
