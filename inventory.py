"""Example inventory: `pyinfra inventory.py deploy.py`.

Shared values live in group_data/all.py (pyinfra loads it by itself); values
here are per host and win over it. Every key is documented in the README.

SSH host keys are checked (pyinfra's default): add each server's key to
~/.ssh/known_hosts first, e.g. `ssh-keyscan -p 22 db1.example.com >> ~/.ssh/known_hosts`
after checking its fingerprint.
"""

# This machine, through the local connector (no SSH).
local = [
    ("@local", {"chroma_project_dir": "/srv/chroma"}),
]

# Servers reached over SSH: each gets its own stack. Replace with your hosts.
chroma_servers = [
    ("db1.example.com", {"ssh_user": "deploy", "_sudo": True}),
    ("db2.example.com", {"ssh_user": "deploy", "_sudo": True, "chroma_port": 8001}),
]
