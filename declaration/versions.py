"""What each Chroma version line needs: where it persists, how it is checked.

The seed lost data because its mount target was right for one server version
and wrong for the one that ran. Everything that differs between version lines
lives here, so the template, the deploy and the drift check ask one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from packaging.version import Version


@dataclass(frozen=True)
class VersionLine:
    """How one Chroma server release line stores data and reports health."""

    name: str
    persist_path: str
    # Environment that pins the persist path explicitly, next to the mount.
    environment: tuple[tuple[str, str], ...]
    heartbeat_path: str
    # Compose healthcheck `test`, run inside the official image of that line.
    healthcheck: tuple[str, ...]
    # 0.x servers write chroma.log in their working dir (/chroma), which a
    # non-root user cannot write: the deploy mounts a file from logs/ there.
    log_file: str | None
    # Environment names the server reads that chroma_env may pass through.
    env_known: frozenset[str] = frozenset()
    # Names (or name prefixes ending in "_") chroma_env refuses, with what to use instead.
    env_instead: tuple[tuple[str, str], ...] = ()
    # Known names whose value is one of a few words: any other stops the server at start.
    env_values: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def refuse_env(self, name: str, value: str | None = None) -> str | None:
        """Why chroma_env must not set ``name`` (to ``value``) on this line, or None when it may."""
        for pattern, instead in self.env_instead:
            if name == pattern or (pattern.endswith("_") and name.startswith(pattern)):
                return instead
        if name not in self.env_known:
            return f"Chroma {self.name} does not read it; leave it out"
        words = dict(self.env_values).get(name)
        if words and value is not None and value not in words:
            return (
                f"{value!r} is not a value Chroma {self.name} takes, and its server would not "
                f"start; use one of {', '.join(words)}"
            )
        return None


# Both lines: what chroma-deploy itself sets from its own keys.
_MANAGED = (
    ("CHROMA_PERSIST_PATH", "set by chroma-deploy from the data dir's mount; leave it out"),
    ("IS_PERSISTENT", "set by chroma-deploy; leave it out"),
    ("PERSIST_DIRECTORY", "set by chroma-deploy from the data dir's mount; leave it out"),
    ("CHROMA_PORT", "set by chroma-deploy; use chroma_port"),
    ("CHROMA_LISTEN_ADDRESS", "set by chroma-deploy; use chroma_bind_address"),
    ("CHROMA_SERVER_HOST", "set by chroma-deploy; use chroma_bind_address"),
    ("CHROMA_SERVER_HTTP_PORT", "set by chroma-deploy; use chroma_port"),
    ("CHROMA_SERVER_AUTHN_", "Chroma's own auth is not used; use chroma_auth_proxy"),
    ("CHROMA_SERVER_AUTHZ_", "Chroma's own auth is not used; use chroma_auth_proxy"),
    ("CHROMA_SERVER_AUTH_", "Chroma's own auth is not used; use chroma_auth_proxy"),
)
# Chroma 1.x's sqlitedb.migration_mode: "apply" (its default) migrates the schema forward
# when it starts; "validate" refuses to start on data with a migration pending (tried on
# 1.5.9: it exits with MigrationError(UnappliedMigrationsFound), also on an empty data dir).
MIGRATION_MODE = "CHROMA_SQLITEDB__MIGRATION_MODE"
# Chroma 1.x reads CHROMA_<key>, "__" for nesting, of its config file (figment). The
# single-node keys it has that chroma-deploy does not set from a key of its own:
_1X_KNOWN = frozenset({"CHROMA_ALLOW_RESET", MIGRATION_MODE})
# The words 1.x takes for it (case matters): any other panics at start with "unknown
# variant: found `garbage`, expected `apply` or `validate`" (tried on 1.5.9).
_1X_VALUES = ((MIGRATION_MODE, ("apply", "validate")),)
_1X_INSTEAD = (
    *_MANAGED,
    # A database keeps the hash of the migrations it was made with (md5 by default), and
    # 1.x refuses it under another, in apply mode too: MigrationError(MigrationValidationError(
    # InconsistentHash(...))) on 1.5.9 (an attack: a serving stack recreated and down).
    (
        "CHROMA_SQLITEDB__HASH_TYPE",
        "a database keeps the hash type its migrations were made with, and Chroma 1.x refuses "
        "it under another; leave it out",
    ),
    ("CHROMA_MAX_PAYLOAD_SIZE_BYTES", "use chroma_max_payload_bytes"),
    ("CHROMA_CORS_ALLOW_ORIGINS", "use chroma_cors_allow_origins"),
    ("CHROMA_OPEN_TELEMETRY__ENDPOINT", "use chroma_otel_endpoint"),
    ("CHROMA_OPEN_TELEMETRY__SERVICE_NAME", "use chroma_otel_service_name"),
    ("CHROMA_MEMORY_LIMIT_BYTES", "Chroma 1.x ignores it; cap the container with chroma_mem_limit"),
    (
        "CHROMA_SEGMENT_CACHE_POLICY",
        "Chroma 1.x ignores it; cap the container with chroma_mem_limit",
    ),
    (
        "CHROMA_SERVER_CORS_ALLOW_ORIGINS",
        "the 0.x name, ignored by 1.x; use chroma_cors_allow_origins",
    ),
    ("CHROMA_OTEL_", "the 0.x names, ignored by 1.x; use chroma_otel_endpoint"),
    ("CHROMA_SERVER_LOG_CONFIG", "Chroma 1.x has no log config file; use chroma_otel_endpoint"),
    ("ANONYMIZED_TELEMETRY", "Chroma 1.x sends no anonymized telemetry; leave it out"),
    ("ALLOW_RESET", "the 0.x name, ignored by 1.x; use CHROMA_ALLOW_RESET"),
)
# Chroma 0.x reads its pydantic Settings' fields, upper-cased (listed from 0.6.3's
# chromadb.config.Settings; 0.4 and 0.5 have a subset).
_0X_KNOWN = frozenset(
    {
        "ALLOW_RESET", "CHROMA_MEMORY_LIMIT_BYTES", "CHROMA_SEGMENT_CACHE_POLICY",
        "CHROMA_SERVER_NOFILE", "CHROMA_SERVER_THREAD_POOL_SIZE",
        "CHROMA_QUERY_REQUEST_TIMEOUT_SECONDS", "CHROMA_OTEL_COLLECTION_ENDPOINT",
        "CHROMA_OTEL_COLLECTION_HEADERS", "CHROMA_OTEL_GRANULARITY", "CHROMA_OTEL_SERVICE_NAME",
        "CHROMA_SERVER_API_DEFAULT_PATH", "CHROMA_SERVER_HEADERS", "MIGRATIONS",
        "MIGRATIONS_HASH_ALGORITHM",
    }
)  # fmt: skip
_0X_INSTEAD = (
    *_MANAGED,
    ("CHROMA_SERVER_CORS_ALLOW_ORIGINS", "use chroma_cors_allow_origins"),
    ("ANONYMIZED_TELEMETRY", "use chroma_telemetry"),
    ("CHROMA_MAX_PAYLOAD_SIZE_BYTES", "a Chroma 1.x setting that 0.x ignores"),
    (
        "CHROMA_OPEN_TELEMETRY__",
        "the 1.x names, ignored by 0.x; use CHROMA_OTEL_COLLECTION_ENDPOINT",
    ),
)


def _bash_heartbeat(path: str) -> tuple[str, ...]:
    # 1.x images have no curl, wget or python; /bin/sh is dash, so bash's
    # /dev/tcp does the request. The template escapes '$' for compose.
    script = (
        "exec 3<>/dev/tcp/127.0.0.1/8000"
        f" && printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3"
        " && read -r proto status rest <&3"
        ' && [ "$status" = 200 ]'
    )
    return ("CMD", "/bin/bash", "-c", script)


def version_line(version: str) -> VersionLine:
    """The line a pinned ``X.Y.Z`` release belongs to (validated beforehand)."""
    parsed = Version(version)
    if parsed >= Version("1.0.0"):
        return VersionLine(
            name="1.x",
            persist_path="/data",
            environment=(("CHROMA_PERSIST_PATH", "/data"),),
            heartbeat_path="/api/v2/heartbeat",
            healthcheck=_bash_heartbeat("/api/v2/heartbeat"),
            log_file=None,
            env_known=_1X_KNOWN,
            env_instead=_1X_INSTEAD,
            env_values=_1X_VALUES,
        )
    heartbeat = "/api/v2/heartbeat" if parsed >= Version("0.5.16") else "/api/v1/heartbeat"
    return VersionLine(
        name="0.x",
        persist_path="/chroma/chroma",
        environment=(
            ("IS_PERSISTENT", "TRUE"),
            ("PERSIST_DIRECTORY", "/chroma/chroma"),
            ("ANONYMIZED_TELEMETRY", "False"),
        ),
        heartbeat_path=heartbeat,
        healthcheck=("CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:8000{heartbeat}"),
        log_file="/chroma/chroma.log",
        env_known=_0X_KNOWN,
        env_instead=_0X_INSTEAD,
    )


# libyaml's safe loader when PyYAML has it (10 times faster: read on every host of every
# run), else PyYAML's own; both load the same documents the same way.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def image_version(image: str) -> str | None:
    """The release an image reference names by its tag, else None.

    ``chromadb/chroma:1.5.9`` and ``chromadb/chroma:1.5.9@sha256:...`` -> ``1.5.9``;
    ``chromadb/chroma:latest``, ``chromadb/chroma@sha256:...`` and a registry's port
    (``registry:5000/chroma``) -> None. The one reading of a tag: the compose file's,
    a container's and drift's advice all go through it.
    """
    last = str(image).split("@", 1)[0].rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    parts = tag.split(".")
    return tag if len(parts) == 3 and all(part.isdigit() for part in parts) else None


def deployed_version(compose_content: str) -> str | None:
    """The chroma image tag a compose file written by chroma-deploy names."""
    try:
        image = yaml.load(compose_content, Loader=_SAFE_LOADER)["services"]["chroma"]["image"]  # noqa: S506 - a safe loader
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    return image_version(str(image))


# The schema level each release's server leaves its data at: the highest migration per
# dir of chroma.sqlite3's `migrations` table (files/chroma_schema.py reads it), read from
# data the real images wrote; tests/integration/test_data_homes.py reads both again on
# every run, so a rebuilt image that differs fails there. Releases only ever add
# migrations, so a release opens, without migrating, exactly the data at or below its
# own level, and a newer release's level is never below an older one's.
SCHEMA_LEVELS: dict[str, dict[str, int]] = {
    "0.6.3": {"embeddings_queue": 2, "metadb": 4, "sysdb": 9},
    "1.5.9": {"embeddings_queue": 2, "metadb": 6, "sysdb": 10},
}


def _within(levels: dict[str, int], limit: dict[str, int]) -> bool:
    """Every migration ``levels`` holds is one ``limit``'s release has (a dir it lacks: no)."""
    return all(limit.get(name, -1) >= level for name, level in levels.items())


def too_new_for(version: str, levels: dict[str, int]) -> bool | None:
    """Whether data at ``levels`` was written by a release newer than ``version``.

    True when a known release at or after ``version`` cannot open it (so
    ``version`` cannot either: it would fail, or write into a schema it does not
    know); False when a known release at or before ``version`` opens it; None
    when no known release tells (``version`` between two known ones whose
    levels bracket the data).
    """
    wanted = Version(version)
    known = [(Version(release), limit) for release, limit in SCHEMA_LEVELS.items()]
    if any(release >= wanted and not _within(levels, limit) for release, limit in known):
        return True
    if any(release <= wanted and _within(levels, limit) for release, limit in known):
        return False
    return None


def migrates(version: str, levels: dict[str, int]) -> bool | None:
    """Whether a ``version`` server would migrate data at ``levels`` forward (one way).

    True when a known release at or before ``version`` has a migration the data
    lacks; False when ``version`` is known and the data is exactly at its level;
    None when no known release tells (an unknown ``version``).
    """
    wanted = Version(version)
    for release, limit in SCHEMA_LEVELS.items():
        if Version(release) <= wanted and _within(levels, limit) and levels != limit:
            return True
    if SCHEMA_LEVELS.get(version) == levels:
        return False
    return None


def data_written_by(levels: dict[str, int]) -> str | None:
    """The known release whose level the data is at exactly, else the oldest that opens it.

    What an archive of the data is labelled with, so that restore.py starts a server
    that opens it. None: the data is newer than every release chroma-deploy knows.
    """
    exact = [release for release, limit in SCHEMA_LEVELS.items() if limit == levels]
    if exact:
        return min(exact, key=Version)
    opens = [release for release, limit in SCHEMA_LEVELS.items() if _within(levels, limit)]
    return min(opens, key=Version) if opens else None


def spelled_levels(levels: dict[str, int] | None) -> str:
    """A schema level as a user reads it: ``embeddings_queue 2, metadb 6, sysdb 10``."""
    return ", ".join(f"{name} {level}" for name, level in sorted((levels or {}).items()))


def data_version_problem(version: str, levels: dict[str, int], where: str) -> str | None:
    """Why a ``version`` server must not open the data in ``where``, or None.

    The data was written by a newer release than ``version``; or by a release
    whose level only a release newer than ``version`` is known to have, while
    nothing says ``version`` opens it: Chroma migrates forward only, and an older
    server on newer data fails or writes into a schema it does not know.
    """
    writer = data_written_by(levels)
    newest = max(SCHEMA_LEVELS, key=Version)
    schema = spelled_levels(levels)
    if too_new_for(version, levels):
        return (
            f"chroma_version: the data in {where} was written by Chroma "
            f"{writer or 'newer than ' + newest} (its schema: {schema}), newer than {version}, "
            f"and Chroma migrates its data forward only; set chroma_version="
            f"{writer or 'that release'}"
        )
    if writer and Version(version) < Version(writer) and too_new_for(version, levels) is None:
        return (
            f"chroma_version: the data in {where} is at Chroma {writer}'s schema level "
            f"({schema}), and nothing says {version}, an older release, opens it (Chroma "
            f"migrates its data forward only); set chroma_version={writer} or newer"
        )
    return None
