"""The least a pyinfra deploy can do on a host: the floor bench_fleet.py measures ours against.

One connection, one fact read with one command (``true``), one operation that
changes nothing. What pyinfra itself costs per host, on the control machine
(connecting, its operation machinery, its output) and on the host (the SSH
session and one shell), before chroma-deploy reads or declares anything.
"""

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import server

host.get_fact(Command, command="true")
server.shell(name="Nothing to do", commands=["true"], _if=lambda: False)
