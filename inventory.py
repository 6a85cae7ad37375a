"""Example inventory: `pyinfra inventory.py deploy.py` converges every host below.

Replace the example servers with yours, or copy this file (e.g. inventories/prod.py).
`--limit chroma_servers` runs one group, `--limit db1.example.com` one host.

Where values come from, strongest first: `--data key=value`, the host's dict below,
its group's dict below, group_data/all.py (shared values; pyinfra loads it by itself),
then the defaults in declaration/settings.py. Every chroma_ key is in docs/configuration.md.

SSH host keys are checked: a host whose key is missing from known_hosts, or
differs from it, is refused and reported by name while the others converge. Add
each server's key once, and compare its fingerprint with the one the server
itself shows (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console):

    ssh-keyscan -p 22 db1.example.com >> ~/.ssh/known_hosts
    ssh-keygen -lf ~/.ssh/known_hosts

pyinfra connects to all hosts at once and runs each operation on all of them in
parallel: a no-op run of three hosts takes about 1.2 times one host.
"""

# This machine, through the local connector (no SSH).
local = [
    ("@local", {"chroma_project_dir": "/srv/chroma"}),
]

# Servers reached over SSH, each with its own Docker engine and stack. The dict
# after the list is data for the whole group.
chroma_servers = (
    [
        # A non-root account with passwordless sudo: every command runs through sudo.
        ("db1.example.com", {"ssh_user": "deploy", "_sudo": True}),
        # A second server whose Chroma listens on port 8001.
        ("db2.example.com", {"ssh_user": "deploy", "_sudo": True, "chroma_port": 8001}),
        # root over SSH on a non-default port, a key of its own, and no registry in
        # reach: the image is exported here once and shipped (needs Docker on this
        # machine, with the image built or pulled: scripts/up.sh does both).
        (
            "db3.internal",
            {
                "ssh_user": "root",
                "ssh_port": 2222,
                "ssh_key": "~/.ssh/id_ed25519_db3",
                "chroma_image_source": "ship",
            },
        ),
    ],
    {
        # Host key checking on, against this file (pyinfra would otherwise ask on
        # the terminal about unknown keys, which an unattended run cannot answer).
        "ssh_known_hosts_file": "~/.ssh/known_hosts",
        "ssh_strict_host_key_checking": "yes",
    },
)
