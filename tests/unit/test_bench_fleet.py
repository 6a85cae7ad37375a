"""The bench's readings (bench/common.py, bench/loopback_hosts.py): what it counts in pyinfra's
logs, and where its networks go on a shared engine. The numbers in docs/ are only as right
as these."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from common import changed_hosts, commands_in_vv
from loopback_hosts import default_pool_use, free_range

# The shape of a -vv log: a command over several lines, its output, other hosts interleaved.
VV_LOG = """\
    [h01] Loaded fact facts.batch.Batch (parts=[...])
[h01] >>> sh -c 'echo '"'"'@@batch-part 0'"'"'; ( echo @@login; id -un
); echo "@@batch-status $?"'
[h10] >>> sh -c 'echo one'
[h01] >>> sh -c 'echo two'
    [h10] >>> not a command: indented output that quotes one
"""


def test_commands_in_vv_counts_each_hosts_printed_commands():
    assert commands_in_vv(VV_LOG) == {"h01": 2, "h10": 1}


def test_changed_hosts_names_the_hosts_with_a_success_line_only():
    output = "    [h01] No changes\n    [h02] Success\n    [h03] Success: not this\n"
    assert changed_hosts(output) == ["h02"]


def _nets(*subnets: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.ip_network(subnet) for subnet in subnets]


def test_default_pools_hold_31_networks_and_count_only_those_inside():
    use = default_pool_use(_nets("172.17.0.0/16", "192.168.240.0/20", "10.213.1.0/24"))
    assert use == {"capacity": 31, "used": 2, "free": 29}


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        ((), "10.213.0.0/16"),
        (("10.213.7.0/24",), "10.214.0.0/16"),
        (("10.0.0.0/8",), None),
    ],
)
def test_bench_networks_come_from_a_range_no_network_overlaps(taken, expected):
    subnets = _nets("172.17.0.0/16", *taken)
    if expected is None:
        with pytest.raises(SystemExit):
            free_range(subnets)
    else:
        assert str(free_range(subnets)) == expected
