"""The compose file rendered from the template, per version line."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from declaration.render import render_compose, server_environment
from declaration.resources import Declared
from declaration.settings import load_settings
from declaration.versions import MIGRATION_MODE, version_line


def _render(**data):
    settings = load_settings({"chroma_project_dir": "/srv/chroma", **data})
    return yaml.safe_load(render_compose(settings, 1000, 1001))


@pytest.mark.parametrize(
    ("version", "target", "heartbeat"),
    [
        ("1.5.9", "/data", "/api/v2/heartbeat"),
        ("1.0.0", "/data", "/api/v2/heartbeat"),
        ("0.6.3", "/chroma/chroma", "/api/v2/heartbeat"),
        ("0.5.16", "/chroma/chroma", "/api/v2/heartbeat"),
        ("0.5.15", "/chroma/chroma", "/api/v1/heartbeat"),
        ("0.4.24", "/chroma/chroma", "/api/v1/heartbeat"),
    ],
)
def test_mount_target_and_healthcheck_follow_the_version_line(version, target, heartbeat):
    chroma = _render(chroma_version=version)["services"]["chroma"]
    assert chroma["image"] == f"chromadb/chroma:{version}"
    assert chroma["volumes"][0] == {
        "type": "bind", "source": "./chroma_data", "target": target,
        "bind": {"create_host_path": False},
    }  # fmt: skip
    assert heartbeat in " ".join(chroma["healthcheck"]["test"])
    persist_env = {"/data": "CHROMA_PERSIST_PATH", "/chroma/chroma": "PERSIST_DIRECTORY"}[target]
    assert chroma["environment"][persist_env] == target
    assert chroma["user"] == "1000:1001"


def test_1x_healthcheck_needs_only_bash():
    test = _render(chroma_version="1.5.9")["services"]["chroma"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "/bin/bash", "-c"]
    assert not any(tool in test[3] for tool in ("curl", "wget", "python"))


def test_0x_mounts_a_log_file_from_the_logs_dir():
    volumes = _render(chroma_version="0.6.3")["services"]["chroma"]["volumes"]
    assert volumes[1]["source"] == "./logs/chroma.log"
    assert volumes[1]["target"] == version_line("0.6.3").log_file


def test_port_is_loopback_by_default_and_ipv6_is_bracketed():
    assert _render()["services"]["chroma"]["ports"] == ["127.0.0.1:8000:8000"]
    ipv6 = _render(chroma_bind_address="::1", chroma_port=9000)["services"]["chroma"]["ports"]
    assert ipv6 == ["[::1]:9000:8000"]


def test_app_service_is_off_by_default_and_points_at_chroma_when_on():
    assert list(_render()["services"]) == ["chroma"]
    app = _render(chroma_app_enabled=True, chroma_app_image="registry.example/kb:1.2")
    agent = app["services"]["knowledge-base-agent"]
    assert agent["environment"]["CHROMA_URL"] == "http://chroma:8000"
    assert agent["environment"]["CHROMA_PERSIST_DIRECTORY"] == "/app/chroma_db"
    assert [v["source"] for v in agent["volumes"]] == ["./chroma_db", "./logs"]
    assert agent["depends_on"] == {"chroma": {"condition": "service_healthy"}}
    assert "CHROMA_AUTH_TOKEN_FILE" not in agent["environment"]
    assert agent["user"] == "1000:1001"
    assert agent["cap_drop"] == ["ALL"]
    assert agent["security_opt"] == ["no-new-privileges:true"]


def test_app_service_goes_through_the_proxy_with_a_token_file_path_not_the_token():
    """Chroma is only on the internal network: the proxy is the application's way in."""
    compose = _render(chroma_app_enabled=True, chroma_app_image="registry.example/kb:1.2",
                      chroma_auth_proxy=True, chroma_port=8123)  # fmt: skip
    agent = compose["services"]["knowledge-base-agent"]
    environment = agent["environment"]
    assert environment["CHROMA_URL"] == "http://auth-proxy:8080"
    assert (environment["CHROMA_HOST"], environment["CHROMA_PORT"]) == ("auth-proxy", "8080")
    secrets = agent["volumes"][2]
    # Its own dir: its token file only, never the proxy's clients or the TLS key (#25).
    assert (secrets["source"], secrets["read_only"]) == ("./secrets/app", True)
    assert environment["CHROMA_AUTH_TOKEN_FILE"] == f"{secrets['target']}/chroma-token.env"
    proxy_dir = compose["services"]["auth-proxy"]["volumes"][0]["source"]
    assert proxy_dir == "./secrets/proxy" and not proxy_dir.startswith(secrets["source"])
    assert agent["depends_on"] == {
        "chroma": {"condition": "service_healthy"},
        "auth-proxy": {"condition": "service_healthy"},
    }


@pytest.mark.parametrize("version", ["1.5.9", "0.6.3"])
def test_behind_the_proxy_chroma_is_alone_on_an_internal_network_the_host_has_no_address_on(
    version,
):
    """Each container in a namespace of its own (a restart of one leaves the other working);
    the server's environment, which an upgrade's rehearsal gets too, says nothing of where
    it listens (before: CHROMA_LISTEN_ADDRESS=127.0.0.1, unreachable in the rehearsal)."""
    compose = _render(chroma_auth_proxy=True, chroma_version=version, chroma_app_enabled=True,
                      chroma_app_image="registry.example/kb:1.2")  # fmt: skip
    services = compose["services"]
    chroma, proxy = services["chroma"], services["auth-proxy"]
    assert chroma["networks"] == ["internal"]
    assert sorted(proxy["networks"]) == ["default", "internal"]
    assert "networks" not in services["knowledge-base-agent"]  # the default network only
    assert not any("network_mode" in service for service in services.values())
    assert "ports" not in chroma and "command" not in chroma
    assert not any("LISTEN" in name or "HOST" in name for name in chroma["environment"])
    internal = compose["networks"]["internal"]
    assert internal["internal"] is True
    assert internal["driver_opts"] == {"com.docker.network.bridge.inhibit_ipv4": "true"}
    heartbeat = version_line(version).heartbeat_path
    assert proxy["environment"] == {"CHROMA_UPSTREAM": "chroma:8000",
                                    "CHROMA_HEARTBEAT_PATH": heartbeat,
                                    # The audit log rotates as the containers' logs (10m, 5).
                                    "CHROMA_AUDIT_MAX_BYTES": str(10 * 1024 * 1024),
                                    "CHROMA_AUDIT_MAX_FILES": "5"}  # fmt: skip
    settings = load_settings({"chroma_project_dir": "/srv/chroma", "chroma_auth_proxy": True,
                              "chroma_version": version})  # fmt: skip
    assert dict(server_environment(settings)) == chroma["environment"]


@pytest.mark.parametrize("version", ["1.5.9", "0.6.3"])
def test_the_stop_grace_is_the_chroma_services_stop_grace_period(version):
    """Compose gives it the container (Config.StopTimeout): every stop of it waits as long."""
    compose = _render(chroma_version=version, chroma_stop_grace_seconds=75)
    assert compose["services"]["chroma"]["stop_grace_period"] == "75s"
    default = load_settings({"chroma_project_dir": "/srv/chroma"}).stop_grace_seconds
    assert _render()["services"]["chroma"]["stop_grace_period"] == f"{default}s"


def test_the_stacks_server_validates_its_schema_on_1x_unless_chroma_env_says_apply():
    """The schema guard: on 1.x an image changed by hand refuses data it would migrate.

    chroma_env's value wins (``apply`` turns it off); 0.x has no such key and gets none.
    """
    settings = load_settings({"chroma_project_dir": "/srv/chroma"})
    assert _render()["services"]["chroma"]["environment"][MIGRATION_MODE] == "validate"
    assert Declared(settings, 1000, 1001).validates
    off = {"chroma_env": {MIGRATION_MODE: "apply"}}
    assert _render(**off)["services"]["chroma"]["environment"][MIGRATION_MODE] == "apply"
    settings = load_settings({"chroma_project_dir": "/srv/chroma", **off})
    assert not Declared(settings, 1000, 1001).validates
    old = _render(chroma_version="0.6.3")["services"]["chroma"]["environment"]
    assert MIGRATION_MODE not in old
    settings = load_settings({"chroma_project_dir": "/srv/chroma", "chroma_version": "0.6.3"})
    assert not Declared(settings, 1000, 1001).validates


def test_a_check_server_on_1x_migrates_while_the_stacks_server_may_validate():
    """The rehearsal and the verification before publishing are the starts after the backup
    that apply an upgrade's schema migration, whatever chroma_env sets for the stack."""
    env = {"chroma_env": {MIGRATION_MODE: "validate"}}
    settings = load_settings({"chroma_project_dir": "/srv/chroma", **env})
    declared = Declared(settings, 1000, 1001)
    assert _render(**env)["services"]["chroma"]["environment"][MIGRATION_MODE] == "validate"
    for server in (declared.check_server, declared.rehearsal):
        assert server is not None
        modes = [item for item in server.environment if item.startswith(f"{MIGRATION_MODE}=")]
        assert modes == [f"{MIGRATION_MODE}=apply"]
        assert server.stop_grace == settings.stop_grace_seconds
    old = Declared(load_settings({"chroma_project_dir": "/srv/chroma",
                                  "chroma_version": "0.6.3"}), 1000, 1001)  # fmt: skip
    assert not any(MIGRATION_MODE in item for item in old.check_server.environment)


def test_without_the_proxy_there_is_no_network_of_our_own():
    compose = _render()
    assert "networks" not in compose and "networks" not in compose["services"]["chroma"]


@pytest.mark.parametrize(
    "hostile",
    [
        'x"\nservices:\n  evil:\n    image: evil',
        "a: b",
        "${HOME}",
        "'q' \"qq\"",
        "-\n- x",
        "{a: 1}",
    ],
)
def test_hostile_values_cannot_add_keys_or_services(hostile):
    """Validation refuses such values; the template must hold even if one got through."""
    settings = replace(
        load_settings({"chroma_project_dir": "/srv/chroma", "chroma_app_enabled": True,
                       "chroma_app_image": "registry.example/kb:1.2"}),
        compose_project=hostile, data_dir=hostile, image=hostile, app_image=hostile,
        restart_policy=hostile,
    )  # fmt: skip
    compose = yaml.safe_load(render_compose(settings, 0, 0))
    assert list(compose) == ["name", "services"]
    assert list(compose["services"]) == ["chroma", "knowledge-base-agent"]
    chroma = compose["services"]["chroma"]
    escaped = hostile.replace("$", "$$")
    assert compose["name"] == escaped
    assert chroma["image"] == f"{escaped}:1.5.9"
    assert chroma["restart"] == escaped
    assert chroma["volumes"][0]["source"] == f"./{escaped}"
    assert compose["services"]["knowledge-base-agent"]["image"] == escaped


def test_hostile_values_cannot_add_keys_or_interpolate():
    # Validation refuses these; the template must hold even if a value got through.
    from declaration.render import yaml_quote

    for value in ['a"\nevil: 1', "x: y", "${HOME}", "'quoted'", "a\\nb"]:
        parsed = yaml.safe_load(f"key: {yaml_quote(value)}")
        assert list(parsed) == ["key"]
        assert parsed["key"] == value.replace("$", "$$")
