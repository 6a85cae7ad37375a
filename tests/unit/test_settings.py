"""The data keys: defaults, validation, and the docs tables and schema that document them."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path

import jsonschema
import pytest

from declaration.settings import KEYS, Settings, SettingsError, load_settings
from declaration.settings_schema import data_keys_schema, schema_text
from declaration.settings_table import settings_table
from declaration.versions import version_line

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
BAD_INPUT = ROOT / "docs" / "bad-input.md"
SCHEMA = ROOT / "schemas" / "data-keys.schema.json"


def test_defaults_validate_and_core_keys_are_defined():
    settings = load_settings({})
    assert settings.project_dir == "/srv/chroma"
    assert settings.bind_address == "127.0.0.1"
    assert settings.port == 8000
    core = {f"chroma_{declared.name}" for declared in fields(Settings) if declared.metadata["core"]}
    assert core == {
        "chroma_project_dir", "chroma_compose_project", "chroma_version", "chroma_port",
        "chroma_bind_address", "chroma_owner", "chroma_group",
    }  # fmt: skip


def test_every_key_is_declared_with_a_description_and_its_own_check():
    for declared in fields(Settings):
        assert declared.metadata["description"], declared.name
        assert callable(declared.metadata["check"]), declared.name


def test_settings_are_immutable_and_a_copy_takes_changes():
    settings = load_settings({})
    with pytest.raises(FrozenInstanceError):
        settings.port = 8001  # type: ignore[misc]
    changed = replace(settings, version="0.6.3")
    assert (changed.version, settings.version) == ("0.6.3", "1.5.9")


def test_docs_table_is_the_one_generated_from_settings():
    assert settings_table() in CONFIGURATION.read_text()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"chroma_port": "8001"}, ("port", 8001)),
        ({"chroma_data_dir_mode": 700}, ("data_dir_mode", "700")),  # pyinfra's --data 0700
        ({"chroma_data_dir_mode": "0700"}, ("data_dir_mode", "700")),
        ({"chroma_owner": 1000}, ("owner", "1000")),
        ({"chroma_project_dir": "/srv//chroma/"}, ("project_dir", "/srv/chroma")),
        ({"chroma_bind_address": "::1"}, ("bind_address", "::1")),
        ({"chroma_legacy_volumes": "a,b"}, ("legacy_volumes", ("a", "b"))),
        ({"chroma_install_docker": "false"}, ("install_docker", False)),
        ({"chroma_create_owner": "true", "chroma_owner": "chroma"}, ("create_owner", True)),
    ],
)
def test_values_are_normalised(data, expected):
    attribute, value = expected
    assert getattr(load_settings(data), attribute) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"chroma_data_dir_mode": 0o750}, "chroma_data_dir_mode: 488 is not allowed"),
        ({"chroma_dir_mode": "0755"}, "gives others nothing"),
        ({"chroma_project_dir": "/srv/../etc"}, "without '..'"),
        ({"chroma_project_dir": "/usr/"}, "not the system dir /usr"),
        ({"chroma_fallback_dir": "chroma_data"}, "must be four different names"),
        ({"chroma_app_name": "chroma"}, "the Chroma service uses it"),
        ({"chroma_app_enabled": True, "chroma_app_image": "app:latest"}, "never 'latest'"),
        ({"chroma_wait_timeout": 5}, "from 10 to 3600"),
        ({"chroma_install_docker": "maybe"}, "true or false"),
        ({"chroma_create_owner": True}, "chroma_create_owner: true needs chroma_owner"),
        ({"chroma_create_owner": True, "chroma_owner": 999}, "to name the account, got '999'"),
        ({"chroma_verison": "1.5.9"}, "did you mean chroma_version?"),
        # Several bad values: the first key in declaration order is named, on one line.
        (
            {"chroma_port": 0, "chroma_project_dir": "rel"},
            "chroma_project_dir: 'rel' is not allowed; use an absolute path such as /srv/chroma",
        ),
        ({"chroma_log_max_files": True}, "chroma_log_max_files: True is not allowed; use a whole"),
        ({"chroma_env": ["A=1"]}, "chroma_env: ['A=1'] is not allowed; use a mapping of NAME"),
        (
            {"chroma_backup_schedule": "30 2 * * *"},
            "chroma_backup_schedule: '30 2 * * *' schedules backups to chroma_backup_repository,"
            " which is not set",
        ),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(data, message):
    with pytest.raises(SettingsError, match=None) as error:
        load_settings(data)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_public_bind_needs_an_explicit_yes():
    with pytest.raises(SettingsError) as error:
        load_settings({"chroma_bind_address": "0.0.0.0"})
    assert "chroma_allow_unauthenticated_public_port=true" in str(error.value)
    allowed = {"chroma_bind_address": "0.0.0.0", "chroma_allow_unauthenticated_public_port": True}
    assert load_settings(allowed).bind_address == "0.0.0.0"
    assert load_settings({"chroma_bind_address": "127.0.0.2"}).bind_address == "127.0.0.2"


def test_plain_http_with_a_token_beyond_loopback_needs_an_explicit_yes():
    public = {"chroma_auth_proxy": True, "chroma_bind_address": "0.0.0.0"}
    with pytest.raises(SettingsError) as error:
        load_settings(public)
    assert "chroma_allow_plain_http=true" in str(error.value)
    assert load_settings({**public, "chroma_allow_plain_http": True}).tls == "off"
    assert load_settings({**public, "chroma_tls": "internal-ca", "chroma_tls_ca_dir": "/x"}).tls
    # Loopback stays as before: no TLS, no extra key.
    assert load_settings({"chroma_auth_proxy": True}).tls == "off"


def test_tls_keys_go_with_their_mode():
    proxy = {"chroma_auth_proxy": True}
    for data, message in (
        ({**proxy, "chroma_tls_ca_dir": "/x"}, "chroma_tls_ca_dir: only chroma_tls=internal-ca"),
        ({**proxy, "chroma_tls_key_file": "/k"}, "chroma_tls_key_file: only chroma_tls=files"),
        (
            {**proxy, "chroma_tls": "files", "chroma_tls_cert_file": "/c"},
            "chroma_tls_key_file: chroma_tls=files needs it",
        ),
        ({**proxy, "chroma_tls_renew_days": 0}, "chroma_tls_renew_days: 0 is not allowed"),
    ):
        with pytest.raises(SettingsError) as error:
            load_settings(data)
        assert message in str(error.value)
        assert "\n" not in str(error.value)


def test_docs_bad_input_table_lists_every_tested_message():
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_input_cases import CASES

    page = BAD_INPUT.read_text()
    for _, message in CASES:
        assert f"`{message}`" in page, message


# Every key whose value becomes a path on a host (or on the control machine), and a
# valid value for it, so that only the character under test makes it wrong.
PATH_KEYS = {
    "chroma_project_dir": "/srv/kb/stack",
    "chroma_backup_dir": "/var/backups/kb",
    "chroma_restore_archive": "/var/backups/kb/kb-20261125T041509Z.tar.gz",
    "chroma_image_build_dir": "/var/cache/kb-build",
    "chroma_auth_token_file": "/etc/kb/token",
}
# Keys that name one dir inside the project dir.
DIR_NAME_KEYS = {
    "chroma_data_dir": "chroma_data",
    "chroma_fallback_dir": "chroma_db",
    "chroma_logs_dir": "logs",
    "chroma_secrets_dir": "secrets",
}
# What a shell would read as more than a word: quotes, expansions, separators,
# redirections, escapes, globs, control characters.
SHELL_SPECIAL = ["'", '"', "$", "$(id)", "`id`", ";", "&", "|", "<", ">", "\\", "\n", "\t",
                 "\r", "\x1b", "\x7f", "*", "?", "["]  # fmt: skip


def _refusal(key: str, value: object) -> str:
    with pytest.raises(SettingsError) as error:
        load_settings({key: value})
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("special", SHELL_SPECIAL, ids=repr)
@pytest.mark.parametrize("key", [*PATH_KEYS, *DIR_NAME_KEYS])
def test_a_path_with_a_shell_character_is_refused_naming_the_key(key, special):
    valid = {**PATH_KEYS, **DIR_NAME_KEYS}[key]
    message = _refusal(key, valid[:-2] + special + valid[-2:])
    assert message.startswith(key)
    assert "is not allowed" in message


@pytest.mark.parametrize("key", [*PATH_KEYS, *DIR_NAME_KEYS])
def test_a_trailing_newline_is_refused(key):
    # A regex's `$` matches before a final newline: the check must not.
    assert _refusal(key, {**PATH_KEYS, **DIR_NAME_KEYS}[key] + "\n").startswith(key)


@pytest.mark.parametrize(
    ("key", "value"),
    [("chroma_compose_project", "kb"), ("chroma_version", "1.5.9"), ("chroma_owner", "root"),
     ("chroma_group", "1000"), ("chroma_dir_mode", "0750"), ("chroma_image", "chromadb/chroma"),
     ("chroma_legacy_volumes", "chroma_data"), ("chroma_adopt_volume", "kb_chroma_data"),
     ("chroma_auth_token_env", "KB_TOKEN"), ("chroma_app_name", "agent"),
     ("chroma_otel_endpoint", "http://otel:4317")],
)  # fmt: skip
def test_no_checked_name_takes_a_trailing_newline(key, value):
    assert load_settings({key: value})  # valid as it is
    assert _refusal(key, value + "\n").startswith(key)


def test_an_env_name_or_a_listed_origin_with_a_trailing_newline_is_refused():
    name = load_settings({"chroma_env": {"CHROMA_ALLOW_RESET": "true"}}).env[0][0]
    assert name == "CHROMA_ALLOW_RESET"  # valid as it is
    assert _refusal("chroma_env", {"CHROMA_ALLOW_RESET\n": "true"}).startswith("chroma_env")
    # A comma-separated string is stripped part by part; a list is taken as given.
    origins = ["https://app.example:8443\n"]
    assert _refusal("chroma_cors_allow_origins", origins).startswith("chroma_cors_allow_origins")


@pytest.mark.parametrize("key", PATH_KEYS)
def test_the_reported_value_is_refused_with_what_is_allowed(key):
    message = _refusal(key, "/srv/it's $(id)")
    assert message.startswith(key)
    assert "/srv/it's $(id)" in message
    assert "is not allowed" in message
    assert "an absolute path of letters, digits, spaces and / . _ - + , @ : = only" in message
    assert "letters, digits, spaces" in message


@pytest.mark.parametrize("key", [*PATH_KEYS, *DIR_NAME_KEYS])
def test_a_part_starting_with_a_dash_is_refused(key):
    value = "/srv/-rf/stack" if key in PATH_KEYS else "-rf"
    assert _refusal(key, value).startswith(key)


@pytest.mark.parametrize("key", PATH_KEYS)
def test_a_path_with_spaces_and_plain_punctuation_is_allowed(key):
    value = "/srv/my project/kb_2.0+x,y@z:1=2"
    attribute = key.removeprefix("chroma_")
    assert getattr(load_settings({key: value}), attribute) == value


# Image references reach the shell too (the proxy image is built on the host by name).
IMAGE_KEYS = {
    "chroma_proxy_image": {},
    "chroma_app_image": {"chroma_app_enabled": True},
}


@pytest.mark.parametrize("special", [*SHELL_SPECIAL, " "], ids=repr)
@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_an_image_reference_with_a_shell_character_is_refused(key, special):
    with pytest.raises(SettingsError) as error:
        load_settings({key: f"registry.example/app{special}x:1.2", **IMAGE_KEYS[key]})
    assert str(error.value).startswith(key)
    with pytest.raises(SettingsError):
        load_settings({key: f"registry.example/app:1.2{special}", **IMAGE_KEYS[key]})


@pytest.mark.parametrize(
    "reference",
    ["registry.example:5000/team/app:1.2.3", "app:v1_RC-2", "chroma-deploy/auth-proxy:1",
     "app:1@sha256:" + "0" * 64, "app@sha256:" + "a" * 64],
)  # fmt: skip
@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_a_pinned_image_reference_is_allowed(key, reference):
    settings = load_settings({key: reference, **IMAGE_KEYS[key]})
    assert getattr(settings, key.removeprefix("chroma_")) == reference


def test_shipped_schema_is_the_one_generated_from_the_model():
    # Regenerate: .venv/bin/python -m declaration.settings_schema > schemas/data-keys.schema.json
    assert SCHEMA.read_text() == schema_text()
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))
    assert list(json.loads(SCHEMA.read_text())["properties"]) == list(KEYS)


def _schema_errors(data: dict[str, object]) -> list[str]:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    return [error.message for error in validator.iter_errors(data)]


def test_schema_accepts_the_example_data_and_every_default():
    shared = runpy.run_path(str(ROOT / "group_data" / "all.py"))
    group_data = {key: value for key, value in shared.items() if key.startswith("chroma_")}
    assert group_data  # the example file sets keys
    assert _schema_errors(group_data) == []
    # The defaults the schema shows: valid by the schema, and the model's own defaults.
    defaults = {key: schema["default"] for key, schema in data_keys_schema()["properties"].items()}
    assert _schema_errors(defaults) == []
    assert load_settings(defaults) == load_settings({})
    written = {"chroma_port": 8001, "chroma_owner": 1000, "chroma_cpus": 1.5,
               "chroma_env": {"CHROMA_ALLOW_RESET": "true"}, "chroma_cors_allow_origins": ["*"],
               "ssh_user": "deploy", "_sudo": True}  # fmt: skip
    assert _schema_errors(written) == []
    load_settings(written)  # and the model takes what the schema takes


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"chroma_prot": 8000}, "chroma_prot"),
        ({"chroma_port": "abc"}, "'abc' is not of type 'integer'"),
        ({"chroma_image_source": "magic"}, "'magic' is not one of"),
        ({"chroma_server_authn_provider": "token"}, "chroma_server_authn_provider"),
        ({"chroma_env": ["A=1"]}, "is not of type 'object'"),
    ],
)
def test_schema_refuses_what_the_model_refuses(data, reason):
    errors = _schema_errors(data)
    assert any(reason in error for error in errors), errors
    with pytest.raises(SettingsError):
        load_settings(data)


def test_schema_has_the_default_and_description_of_every_key():
    properties = data_keys_schema()["properties"]
    for declared in fields(Settings):
        shipped = properties[f"chroma_{declared.name}"]
        assert shipped["description"] == declared.metadata["description"]
        written = (
            {} if declared.name in ("env", "tokens") else json.loads(json.dumps(declared.default))
        )
        assert shipped["default"] == written


def test_versions_compare_as_numbers_not_as_text():
    assert load_settings({"chroma_version": "0.4.0"}).version == "0.4.0"
    assert "use 0.4.0 or newer" in _refusal("chroma_version", "0.3.99")
    assert load_settings({"chroma_version": "0.10.0"}).version == "0.10.0"  # "0.10" < "0.4" as text
    assert version_line("0.10.0").heartbeat_path == "/api/v2/heartbeat"  # newer than 0.5.16
    assert version_line("10.0.0").name == "1.x"


@pytest.mark.parametrize(
    ("version", "message"),
    [("1.5.9", "Chroma 1.5.9 has no built-in authentication"),
     ("0.6.3", "chroma-deploy does not pass Chroma 0.x auth settings")],
)  # fmt: skip
def test_a_chroma_0x_auth_key_is_refused_on_either_line(version, message):
    data = {"chroma_version": version, "chroma_server_auth_provider": "token"}
    with pytest.raises(SettingsError) as error:
        load_settings(data)
    assert str(error.value).startswith("chroma_server_auth_provider: ")
    assert message in str(error.value)


def test_loading_settings_does_not_import_pydantic():
    """pydantic's import costs ~80 ms of CPU per run: it belongs to the schema generator."""
    code = (
        "import sys; from declaration.settings import load_settings; load_settings({}); "
        "print(sorted(name for name in sys.modules if name.startswith('pydantic')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
