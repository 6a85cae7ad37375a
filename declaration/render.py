"""Render docker-compose.yml from templates/docker-compose.yml.j2.

Pure functions: the same settings always give the same bytes, which is what
makes "the file changed" a reliable reason to restart the stack.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jinja2

from declaration.settings import Settings
from declaration.versions import MIGRATION_MODE, version_line

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
COMPOSE_TEMPLATE = "docker-compose.yml.j2"
# Where the application service finds the secrets dir (read-only, holding chroma-token.env).
APP_SECRETS_DIR = "/run/secrets/chroma-deploy"


def yaml_quote(value: object) -> str:
    """A double-quoted YAML scalar that cannot add keys or interpolate variables.

    JSON strings are valid YAML, escape newlines and quotes, and compose reads
    `$$` as a literal `$`.
    """
    return json.dumps(str(value).replace("$", "$$"))


@functools.cache
def _environment() -> jinja2.Environment:
    """One per process: it keeps the compiled template (compiling it costs ~13 ms, once per
    host of a fleet before). jinja still reloads the template if its file changes."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, not HTML: values go through the q filter
    )
    env.filters["q"] = yaml_quote
    return env


def size_bytes(size: str) -> int:
    """A size as the settings write it (``10m``, ``512k``, ``1g``, ``100``) in bytes."""
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    if size[-1] in units:
        return int(size[:-1]) * units[size[-1]]
    return int(size)


def published_port(bind_address: str, port: int) -> str:
    """The `ports:` entry: host address, host port, container port 8000."""
    host = f"[{bind_address}]" if ":" in bind_address else bind_address
    return f"{host}:{port}:8000"


def proxy_published_port(bind_address: str, port: int) -> str:
    """The auth-proxy's `ports:` entry: it listens on 8080 in its container."""
    return published_port(bind_address, port).rsplit(":", 1)[0] + ":8080"


def server_environment(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The Chroma server's environment: the version line's own, then the server keys.

    Each key goes under the name its version line reads (checked by the settings).
    On 1.x the server validates its schema (``validate``: it refuses to start on data
    with a migration pending instead of migrating it one way); chroma-deploy's own
    starts after a backup apply them (declaration/resources.py ``_server``), and a
    first start's schema is made before it (operations/schema.py). chroma_env may
    set ``apply``.
    """
    line = version_line(settings.version)
    environment = dict(line.environment)
    if line.name == "1.x":
        environment[MIGRATION_MODE] = "validate"
    if line.name == "0.x":
        environment["ANONYMIZED_TELEMETRY"] = "True" if settings.telemetry else "False"
    if settings.cors_allow_origins:
        name = (
            "CHROMA_CORS_ALLOW_ORIGINS"
            if line.name == "1.x"
            else "CHROMA_SERVER_CORS_ALLOW_ORIGINS"
        )
        environment[name] = json.dumps(list(settings.cors_allow_origins))
    if settings.max_payload_bytes is not None:
        environment["CHROMA_MAX_PAYLOAD_SIZE_BYTES"] = str(settings.max_payload_bytes)
    if settings.otel_endpoint:
        environment["CHROMA_OPEN_TELEMETRY__ENDPOINT"] = settings.otel_endpoint
        environment["CHROMA_OPEN_TELEMETRY__SERVICE_NAME"] = settings.otel_service_name or "chroma"
    environment.update(settings.env)
    return tuple(environment.items())


def app_environment(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The application service's environment: where Chroma answers it, and its dirs.

    With the auth proxy on, Chroma is only on the stack's internal network, which the
    application is not on, so the application goes through the proxy, with the token from the file
    CHROMA_AUTH_TOKEN_FILE names (a path, never the token: `docker inspect` shows it).
    """
    host, port = ("auth-proxy", "8080") if settings.auth_proxy else ("chroma", "8000")
    if settings.auth_proxy and settings.tls != "off":
        port = "8081"  # the proxy's plain port on the stack's own network: 8080 speaks TLS
    environment = {
        "CHROMA_URL": f"http://{host}:{port}",
        "CHROMA_HOST": host,
        "CHROMA_PORT": port,
        # The fallback PersistentClient writes here: the bind-mounted fallback dir.
        "CHROMA_PERSIST_DIRECTORY": "/app/chroma_db",
        "LOG_DIR": "/app/logs",
    }
    if settings.auth_proxy:
        environment["CHROMA_AUTH_TOKEN_FILE"] = f"{APP_SECRETS_DIR}/chroma-token.env"
    return tuple(environment.items())


def render_compose(settings: Settings, uid: int, gid: int) -> str:
    """The compose file for these settings, the container running as uid:gid.

    The proxy's clients are a file in a mounted dir, not its config: a new token
    reaches nginx by a reload (operations/tokens.py), with no container recreated.
    """
    line = version_line(settings.version)
    return (
        _environment()
        .get_template(COMPOSE_TEMPLATE)
        .render(
            version_line=line.name,
            project=settings.compose_project,
            image_ref=settings.image_ref,
            restart_policy=settings.restart_policy,
            stop_grace=settings.stop_grace_seconds,
            user=f"{uid}:{gid}",
            uid=uid,
            gid=gid,
            environment=server_environment(settings),
            mem_limit=settings.mem_limit,
            cpus=settings.cpus,
            log_max_size=settings.log_max_size,
            log_max_files=settings.log_max_files,
            published_port=published_port(settings.bind_address, settings.port),
            data_dir=settings.data_dir,
            fallback_dir=settings.fallback_dir,
            logs_dir=settings.logs_dir,
            persist_path=line.persist_path,
            log_file=line.log_file,
            healthcheck=line.healthcheck,
            heartbeat_path=line.heartbeat_path,
            auth_proxy=settings.auth_proxy,
            proxy_image=settings.proxy_image,
            proxy_published_port=proxy_published_port(settings.bind_address, settings.port),
            secrets_dir=settings.secrets_dir,
            audit_max_bytes=size_bytes(settings.log_max_size),
            tls=settings.auth_proxy and settings.tls != "off",
            app_enabled=settings.app_enabled,
            app_name=settings.app_name,
            app_image=settings.app_image or "",
            app_environment=app_environment(settings),
            app_secrets_dir=APP_SECRETS_DIR,
        )
    )
