"""Bad data keys and the one line each must produce: tests and docs/bad-input.md share it."""

CASES = [
    ({"chroma_port": 0}, "chroma_port: 0 is not allowed; use a whole number from 1 to 65535"),
    ({"chroma_port": 70000}, "chroma_port: 70000 is not allowed"),
    (
        {"chroma_restore_drill": "true"},
        "chroma_restore_drill: needs chroma_backup_repository (and its password file) to restore "
        "the latest snapshot from; set them, or leave chroma_restore_drill unset",
    ),
    ({"chroma_port": "abc"}, "chroma_port: 'abc' is not allowed"),
    (
        {"chroma_maintain_apply": "x"},
        "chroma_maintain_apply: 'x' is not allowed; use one of orphans, vacuum",
    ),
    ({"chroma_project_dir": "relative/dir"}, "chroma_project_dir: 'relative/dir' is not allowed"),
    ({"chroma_project_dir": "/"}, "not the system dir /"),
    ({"chroma_project_dir": "/etc"}, "not the system dir /etc"),
    ({"chroma_version": "latest"}, "chroma_version: 'latest' is not allowed; use a pinned release"),
    ({"chroma_version": "1.5 .9"}, "chroma_version: '1.5 .9' is not allowed"),
    ({"chroma_version": "0.3.29"}, "chroma_version: '0.3.29' is not allowed; use 0.4.0 or newer"),
    ({"chroma_prot": 8000}, "chroma_prot: unknown data key (did you mean chroma_port?)"),
    ({"chroma_owner": "nosuchuser"}, "chroma_owner: 'nosuchuser' has no account on the host"),
    ({"chroma_group": "nosuchgroup"}, "chroma_group: 'nosuchgroup' has no group on the host"),
    ({"chroma_bind_address": "localhost"}, "chroma_bind_address: 'localhost' is not allowed"),
    ({"chroma_bind_address": "300.1.1.1"}, "chroma_bind_address: '300.1.1.1' is not allowed"),
    ({"chroma_compose_project": "MyStack"}, "chroma_compose_project: 'MyStack' is not allowed"),
    ({"chroma_compose_project": "my stack"}, "chroma_compose_project: 'my stack' is not allowed"),
    ({"chroma_data_dir_mode": "0777"}, "chroma_data_dir_mode: 777 is not allowed"),
    ({"chroma_data_dir": "../escape"}, "chroma_data_dir: '../escape' is not allowed"),
    (
        {"chroma_project_dir": "/srv/it's $(id)"},
        'chroma_project_dir: "/srv/it\'s $(id)" is not allowed; use an absolute path of letters, '
        "digits, spaces and / . _ - + , @ : = only, no part starting with '-'",
    ),
    (
        {"chroma_backup_dir": "/var/backups/kb;reboot"},
        "chroma_backup_dir: '/var/backups/kb;reboot' is not allowed",
    ),
    ({"chroma_image_source": "magic"}, "chroma_image_source: 'magic' is not allowed; use one of"),
    ({"chroma_restart_policy": "sometimes"}, "chroma_restart_policy: 'sometimes' is not allowed"),
    ({"chroma_app_enabled": True}, "chroma_app_enabled: True needs chroma_app_image"),
    ({"chroma_owner": "-rf"}, "chroma_owner: '-rf' is not allowed"),
    ({"chroma_image": "-evil/chroma"}, "chroma_image: '-evil/chroma' is not allowed"),
    ({"chroma_bind_address": "0.0.0.0"}, "would publish Chroma, which has no authentication"),
    (
        {"chroma_server_authn_provider": "token"},
        "a Chroma 0.x auth setting, and Chroma 1.5.9 has no built-in authentication",
    ),
    ({"chroma_auth_token_env": "lower-case"}, "chroma_auth_token_env: 'lower-case' is not allowed"),
    (
        {"chroma_version": "0.6.3", "chroma_max_payload_bytes": 1000},
        "chroma_max_payload_bytes: a Chroma 1.x setting, and chroma_version=0.6.3 would ignore it",
    ),
    ({"chroma_telemetry": True}, "Chroma 1.5.9 sends no anonymized telemetry"),
    (
        {"chroma_env": "CHROMA_SERVER_AUTHN_PROVIDER=token"},
        "chroma_env: CHROMA_SERVER_AUTHN_PROVIDER: Chroma's own auth is not used; use "
        "chroma_auth_proxy",
    ),
    (
        {"chroma_env": "CHROMA_MEMORY_LIMIT_BYTES=1000000"},
        "chroma_env: CHROMA_MEMORY_LIMIT_BYTES: Chroma 1.x ignores it; cap the container with "
        "chroma_mem_limit",
    ),
    ({"chroma_env": "NOT_A_SETTING=1"}, "chroma_env: NOT_A_SETTING: Chroma 1.x does not read it"),
    (
        {"chroma_env": "CHROMA_SQLITEDB__MIGRATION_MODE=garbage"},
        "chroma_env: CHROMA_SQLITEDB__MIGRATION_MODE: 'garbage' is not a value Chroma 1.x takes, "
        "and its server would not start; use one of apply, validate",
    ),
    (
        {"chroma_env": "CHROMA_SQLITEDB__HASH_TYPE=sha256"},
        "chroma_env: CHROMA_SQLITEDB__HASH_TYPE: a database keeps the hash type its migrations "
        "were made with, and Chroma 1.x refuses it under another; leave it out",
    ),
    (
        {"chroma_cors_allow_origins": "app.example"},
        "chroma_cors_allow_origins: 'app.example' is not allowed",
    ),
    ({"chroma_mem_limit": "lots"}, "chroma_mem_limit: 'lots' is not allowed"),
    ({"chroma_cpus": 0}, "chroma_cpus: 0 is not allowed"),
    ({"chroma_log_max_size": 10}, "chroma_log_max_size: 10 is not allowed"),
    ({"chroma_otel_endpoint": "otel:4317"}, "chroma_otel_endpoint: 'otel:4317' is not allowed"),
    (
        {"chroma_otel_service_name": "kb"},
        "chroma_otel_service_name: needs chroma_otel_endpoint; set both",
    ),
    (
        {"chroma_otel_endpoint": "http://otel.example:4317", "chroma_auth_proxy": True},
        "chroma_otel_endpoint: behind the auth proxy Chroma is on an internal network with no "
        "route out",
    ),
    (
        {"chroma_cors_allow_origins": "*,http://app.example"},
        "either '*' alone or a list of origins, not both",
    ),
    # The backup repository's files are read on the control machine, before any host changes.
    (
        {
            "chroma_backup_repository": "/var/backups/kb-restic",
            "chroma_backup_password_file": "/nonexistent/restic-password",
        },
        "chroma_backup_password_file: '/nonexistent/restic-password' cannot be read (No such "
        "file or directory); name a readable file on the control machine that holds the "
        "repository's password",
    ),
    (
        {
            "chroma_backup_repository": "sftp:restic@vault.example:/srv/restic/kb",
            "chroma_backup_password_file": "/etc/hostname",
            "chroma_backup_ssh_key": "/nonexistent/restic-ssh-key",
            "chroma_backup_known_hosts": "/etc/hostname",
        },
        "chroma_backup_ssh_key: '/nonexistent/restic-ssh-key' cannot be read (No such file or "
        "directory); name a readable file on the control machine that holds the private key "
        "for the repository",
    ),
    (
        {
            "chroma_backup_repository": "sftp:restic@vault.example:/srv/restic/kb",
            "chroma_backup_password_file": "/etc/hostname",
            "chroma_backup_ssh_key": "/etc/hostname",
            "chroma_backup_known_hosts": "/dev/null",
        },
        "chroma_backup_known_hosts: '/dev/null' is empty; it must hold the repository host's "
        "known_hosts line(s) (ssh-keyscan HOST, checked)",
    ),
    (
        {"chroma_auth_proxy": True, "chroma_bind_address": "0.0.0.0"},
        "chroma_tls: off would send the token in clear text to 0.0.0.0; set chroma_tls=internal-ca "
        "(or files), keep chroma_bind_address=127.0.0.1, or set chroma_allow_plain_http=true if "
        "only a trusted network (a VPN) reaches it",
    ),
    ({"chroma_tls": "internal-ca"}, "chroma_tls: internal-ca needs chroma_auth_proxy=true"),
    (
        {"chroma_auth_proxy": True, "chroma_tls": "acme"},
        "chroma_acme_email: chroma_tls=acme needs it (lego registers the ACME account with it); "
        "set chroma_acme_email=<your address>",
    ),
    (
        {
            "chroma_auth_proxy": True,
            "chroma_tls": "acme",
            "chroma_acme_email": "ops@example.org",
            "chroma_port": 8000,  # the test's base data names a free port of its own
            "chroma_acme_http_port": 8000,
        },
        "chroma_acme_http_port: 8000 is chroma_port, where the proxy listens; lego answers "
        "HTTP-01 on a port of its own: keep 80, or name a free port",
    ),
    (
        {"chroma_acme_domains": "kb.example.org"},
        "chroma_acme_domains: only chroma_tls=acme uses it, and chroma_tls is off; set "
        "chroma_tls=acme, or leave it unset",
    ),
    (
        {"chroma_acme_domains": "10.0.0.5"},
        "chroma_acme_domains: '10.0.0.5' is not allowed; use a list of DNS names such as "
        "['kb.example.org'] (no address, no '*')",
    ),
    (
        {"chroma_auth_proxy": True, "chroma_tls": "files"},
        "chroma_tls_cert_file: chroma_tls=files needs it; name the file on the control machine",
    ),
    (
        {"chroma_auth_proxy": True, "chroma_tls": "internal-ca"},
        "chroma_tls_ca_dir: chroma_tls=internal-ca needs it",
    ),
    # A token per client (#25): a bad client name, a role that is not one of the three.
    (
        {"chroma_auth_proxy": True, "chroma_tokens": '{"Dash Board": "read"}'},
        "chroma_tokens: {'Dash Board': 'read'} is not allowed; use client names of 1 to 64 of "
        "a-z 0-9 _ - (not 'Dash Board')",
    ),
    (
        {"chroma_auth_proxy": True, "chroma_tokens": "dashboard=reader"},
        "chroma_tokens: 'dashboard=reader' is not allowed; use a role of read, write or admin "
        "for 'dashboard' (not 'reader')",
    ),
]
