"""Time a no-op converge of one SSH host and of the whole test fleet, against the floor.

Run: `.venv/bin/python bench/fleet.py [--fresh] [--runs N]` (needs scripts/test-env.sh
done). It brings up the SSH test hosts of tests/harness/ssh_hosts.py (kept if they
run; `--fresh` recreates them and also times their creation and the first converge
of all of them in one run), converges them, then times:

- a no-op `pyinfra -y INVENTORY deploy.py` of one host and of all hosts (median of
  N runs); pyinfra works on the hosts in parallel, so all hosts should cost at most
  1.5 times one;
- the commands pyinfra ran on each host in a no-op run (its `-vv` log: `[host] >>>`);
- the floor: one `ssh` command per host (a new connection each, as pyinfra makes)
  that reads the same state a no-op run must read, for one host and for all at once.

Prints one JSON document.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
sys.path.insert(0, str(ROOT / "tests"))

from harness.ssh_hosts import HOSTS, Fleet, ensure_fleet  # noqa: E402

PROJECT = "/srv/chroma"
FLOOR_COMMAND = (
    f"cd {PROJECT} && stat -c '%u %g %a' . chroma_data chroma_db logs */.gitkeep"
    " && sha256sum docker-compose.yml .gitignore"
    " && docker image inspect --format '{{.Id}}' chromadb/chroma:1.5.9"
    " && docker inspect --format '{{.State.Health.Status}} {{.Image}}' chroma-chroma-1"
    " && docker compose config --hash chroma"
)


def deploy(inventory: Path, verbose: bool = False) -> tuple[float, str]:
    args = [PYINFRA, "-y", str(inventory), "deploy.py"] + (["-vv"] if verbose else [])
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench/fleet.py: the deploy failed:\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout + done.stderr


def floor(fleet: Fleet, count: int) -> float:
    """Wall time of one ssh command per host, ``count`` hosts at once."""
    start = time.perf_counter()
    running = []
    for test_host in fleet.hosts[:count]:
        remote = f'sudo -n sh -c "{FLOOR_COMMAND}"' if test_host.sudo else FLOOR_COMMAND
        args = [*fleet.ssh_args(test_host), remote]
        running.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for process in running:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"bench/fleet.py: the floor command failed: {stderr.decode()}")
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 5
    result: dict[str, object] = {"hosts": len(HOSTS)}
    start = time.perf_counter()
    fleet = ensure_fleet(fresh="--fresh" in argv)
    result["hosts_ready_s"] = round(time.perf_counter() - start, 1)
    first, _ = deploy(fleet.inventory)  # the first converge after --fresh, else a no-op
    if "--fresh" in argv:
        result["first_converge_all_s"] = round(first, 1)

    with tempfile.TemporaryDirectory(prefix="cdfleet-bench-") as scratch:
        one = fleet.write_inventory(
            Path(scratch) / "one.py", hosts=fleet.hosts[:1], shared={"chroma_image_source": "ship"}
        )
        noop_one = [deploy(one)[0] for _ in range(runs)]
        noop_all = [deploy(fleet.inventory)[0] for _ in range(runs)]
    _, log = deploy(fleet.inventory, verbose=True)
    per_host = Counter(re.findall(r"^\[(cdfleet\d+)\] >>> ", log, flags=re.MULTILINE))
    floor_one = [floor(fleet, 1) for _ in range(runs)]
    floor_all = [floor(fleet, len(fleet.hosts)) for _ in range(runs)]

    one_s, all_s = statistics.median(noop_one), statistics.median(noop_all)
    one_floor, all_floor = statistics.median(floor_one), statistics.median(floor_all)
    result.update(
        {
            "noop_one_host_s": round(one_s, 2),
            "noop_all_hosts_s": round(all_s, 2),
            "all_over_one": round(all_s / one_s, 2),
            "commands_per_host_noop": dict(sorted(per_host.items())),
            "floor_one_host_s": round(one_floor, 3),
            "floor_all_hosts_s": round(all_floor, 3),
            "noop_one_over_floor": round(one_s / one_floor, 1),
            "noop_all_over_floor": round(all_s / all_floor, 1),
        }
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
