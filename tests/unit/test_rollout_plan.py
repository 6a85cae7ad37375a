"""rollout.py without hosts: the plan, bad input, pyinfra's recorded output, halting, summary.

The pyinfra runs in tests/fixtures/rollout/ were recorded on the SSH test hosts
(tests/harness/ssh_hosts.py) with the command each file names: a refusal while
pyinfra prepared, a proof that failed on a read-only data dir, a proof on a server
that did not answer, a host stopped in the middle of its proof, a stack that did
not come up, a refused SSH key, and runs that passed.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from fleet.plan import (
    NOT_RUN,
    BatchSize,
    StepResult,
    UsageError,
    check_max_failures,
    describe_plan,
    heartbeat_verdict,
    parse_batch,
    plan_batches,
    read_run,
    render_json,
    render_table,
    run_rollout,
    select_canaries,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "rollout"
SCHEMA = json.loads((ROOT / "schemas" / "rollout.schema.json").read_text())
HOSTS = [f"db{i}" for i in range(1, 8)]


# ---- the plan -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_batch_of_6"),
    [("1", 1), ("4", 4), ("50%", 3), ("34%", 3), ("1%", 1), ("100%", 6)],
)
def test_batch_is_a_number_of_hosts_or_a_share_of_those_after_the_canary(text, per_batch_of_6):
    assert parse_batch(text).per_batch(6) == per_batch_of_6


@pytest.mark.parametrize("text", ["0", "0%", "150%", "101%", "-1", "abc", "2.5", "%", ""])
def test_a_batch_size_that_is_not_allowed_names_the_flag_and_what_is(text):
    with pytest.raises(UsageError) as refused:
        parse_batch(text)
    assert str(refused.value) == (
        f"--batch {text} is not allowed: use a number of hosts from 1 up (e.g. 2) "
        "or a percentage from 1% to 100% (25%)"
    )


def test_max_failures_below_zero_is_refused():
    assert check_max_failures(0) == 0
    with pytest.raises(UsageError, match=r"^--max-failures -1 is not allowed: use 0 or more"):
        check_max_failures(-1)


def test_the_canary_is_the_first_host_unless_named():
    assert select_canaries(HOSTS, []) == ["db1"]
    assert select_canaries(HOSTS, ["db5", "db2", "db5"]) == ["db5", "db2"]
    with pytest.raises(UsageError) as refused:
        select_canaries(HOSTS, ["db2", "db9"])
    assert str(refused.value) == (
        f"--canary db9 is not in the inventory: use one of {', '.join(HOSTS)}"
    )


def test_batches_are_the_canaries_then_the_others_in_inventory_order():
    assert plan_batches(HOSTS, ["db1"], BatchSize(count=1)) == [[name] for name in HOSTS]
    assert plan_batches(HOSTS, ["db4"], BatchSize(count=4)) == [
        ["db4"], ["db1", "db2", "db3", "db5"], ["db6", "db7"],
    ]  # fmt: skip
    # 25% of the six hosts after the canaries: two at a time.
    assert plan_batches(HOSTS, ["db3", "db1"], BatchSize(percent=25)) == [
        ["db3", "db1"], ["db2", "db4"], ["db5", "db6"], ["db7"],
    ]  # fmt: skip
    assert plan_batches(HOSTS, HOSTS, BatchSize(count=1)) == [HOSTS]  # all canaries
    half = parse_batch("50%")
    assert describe_plan(plan_batches(HOSTS, ["db1"], half), half, 0) == (
        "rollout of 7 host(s): canary db1, then 2 batch(es) of up to 3; halts at the first failure"
    )
    assert describe_plan([["db1", "db2"]], half, 1) == (
        "rollout of 2 host(s): canary db1, db2, no other host; halts on a failed canary, "
        "or when more than 1 host(s) fail"
    )


# ---- bad input on the command line: one line, exit 1, no host touched ------------------------


@pytest.fixture
def inventory(tmp_path):
    """Three hosts nobody answers for: reaching any of them would fail the test."""
    path = tmp_path / "inventory.py"
    rows = ", ".join(
        f"('db{i}', {{'ssh_hostname': '127.0.0.1', 'ssh_port': 9, 'chroma_port': 8000}})"
        for i in range(1, 4)
    )
    path.write_text(f"servers = [{rows}]\n")
    return path


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--canary", "db9"], "--canary db9 is not in the inventory: use one of db1, db2, db3"),
        (["--batch", "0"], "--batch 0 is not allowed: use a number of hosts from 1 up"),
        (["--batch", "150%"], "--batch 150% is not allowed: use a number of hosts from 1 up"),
        (["--max-failures", "-1"], "--max-failures -1 is not allowed: use 0 or more"),
        (["--max-failures", "x"], "argument --max-failures: invalid int value: 'x'"),
        (["--data", "chroma_port"], "--data 'chroma_port' is not allowed: use KEY=VALUE"),
        (["--data", "chroma_port=70000"], "db1: chroma_port: 70000 is not allowed; use"),
        (["--data", "chroma_prot=8001"], "db1: chroma_prot: unknown data key (did you mean"),
        (
            ["--data", "chroma_auth_proxy=true", "--data", "chroma_auth_token_file=/nonexistent"],
            "db1: chroma_auth_token_file: '/nonexistent' cannot be read (No such file",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_flag_before_any_host_is_touched(
    inventory, monkeypatch, capsys, args, line
):
    import rollout

    monkeypatch.setattr(rollout, "run_rollout", _must_not_run)
    assert rollout.main([str(inventory), *args]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"rollout.py: {line}"), err


def test_an_inventory_that_does_not_exist_or_holds_no_host_is_refused(
    tmp_path, monkeypatch, capsys
):
    import rollout

    monkeypatch.setattr(rollout, "run_rollout", _must_not_run)
    missing = tmp_path / "nosuch.py"
    assert rollout.main([str(missing)]) == 1
    empty = tmp_path / "empty.py"
    empty.write_text("servers = []\n")
    assert rollout.main([str(empty)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"rollout.py: inventory {missing}: no such file; give an inventory file, @local, "
        "@ssh/HOST or host1,host2",
        f"rollout.py: inventory {str(empty)!r} has no hosts: give an inventory file, @local, "
        "@ssh/HOST or host1,host2",
    ]


def _must_not_run(*args, **kwargs):
    raise AssertionError("a host was about to be touched")


# ---- what pyinfra printed, recorded on the SSH test hosts ------------------------------------


def recorded(case: str) -> tuple[dict, dict[str, StepResult]]:
    run = json.loads((FIXTURES / f"{case}.json").read_text())
    return run, read_run(run["returncode"], run["stdout"], run["stderr"], run["hosts"])


def test_a_deploy_that_changed_one_host_and_not_the_other():
    _, results = recorded("deploy-changed-and-unchanged")
    assert results == {
        "cdfleet1": StepResult(ok=True, changed=True),
        "cdfleet2": StepResult(ok=True, changed=False),
    }


def test_a_refusal_while_preparing_fails_its_host_and_reaches_no_other():
    run, results = recorded("deploy-refused-while-preparing")
    assert run["stdout"] == ""  # pyinfra stopped before any host changed: no results
    assert results["cdfleet1"] == NOT_RUN
    assert results["cdfleet2"] == StepResult(
        ok=False,
        reason="chroma_fallback_dir: /srv/rollout/chroma_db is a regular empty file, not a "
        "directory; move it aside (chroma-deploy never deletes anything there), then run again",
    )


def test_a_failed_proof_is_named_with_its_verdict_and_operation():
    _, results = recorded("proof-failed")
    assert results["cdfleet3"] == StepResult(
        ok=False,
        reason="persistence proof: FAIL: the canary did not survive down/up",
        operation="Persistence proof of rollout: canary, down, up, read back",
    )


def test_one_failed_host_of_two_gets_the_last_line_printed_for_it():
    _, results = recorded("deploy-one-of-two-failed")
    assert results["cdfleet2"] == StepResult(ok=True)
    assert results["cdfleet3"] == StepResult(
        ok=False,
        reason="container rollout-chroma-1 is unhealthy",
        operation="Stack rollout up and healthy",
    )


def test_a_host_that_refused_the_key_is_named_with_the_connect_error():
    _, results = recorded("deploy-connect-failed")
    assert results["cdfleet2"] == StepResult(ok=True)
    assert results["cdfleet1"].ok is False
    assert results["cdfleet1"].reason == (
        "Authentication error (username=root, key=/var/tmp/cdfleet/wrong_ed25519) "
        "(Authentication failed.)"
    )


def test_a_proof_that_failed_on_one_host_of_two():
    _, results = recorded("proof-one-of-two-failed")
    assert results["cdfleet1"].ok is True
    assert results["cdfleet2"].ok is False
    assert (
        results["cdfleet2"].reason == "persistence proof: FAIL: the canary did not survive down/up"
    )


def test_a_host_lost_in_the_middle_of_its_proof_is_not_blamed_on_compose_progress():
    run, results = recorded("proof-host-went-away")
    assert "[cdfleet2]  Container rollout-chroma-1 Waiting" in run["stderr"]  # its last line
    assert results["cdfleet1"].ok is True
    assert results["cdfleet2"] == StepResult(
        ok=False,
        reason="failed with no message (pyinfra: Error: executed 4 commands)",
        operation="Persistence proof of rollout: canary, down, up, read back",
    )


def test_a_proof_that_passed_on_two_hosts():
    _, results = recorded("proof-passed")
    assert {name: result.ok for name, result in results.items()} == {
        "cdfleet1": True, "cdfleet2": True,
    }  # fmt: skip


# ---- the heartbeat, from ChromaHealth facts recorded for tests/unit/test_fact_fixtures.py --------


def health(case: str) -> dict:
    path = ROOT / "tests" / "fixtures" / "facts" / "chroma.ChromaHealth" / f"{case}.json"
    return json.loads(path.read_text())["fact"]


def test_a_heartbeat_passes_with_the_declared_version_running():
    assert heartbeat_verdict(health("healthy"), "http://127.0.0.1:8000", "1.5.9") == StepResult(
        ok=True, detail="1.5.9"
    )
    # With the proxy's token, and where the fact could not see the container: no version.
    for case in ("with_token_file", "no_curl_healthy"):
        assert heartbeat_verdict(health(case), "http://127.0.0.1:8000", "1.5.9").ok, case


def test_a_heartbeat_fails_without_an_answer_or_with_another_version():
    url = "http://127.0.0.1:18998"
    down = heartbeat_verdict(health("down"), url, "1.5.9")
    assert down.ok is False
    assert down.reason == f"no heartbeat at {url}: " + health("down")["error"]
    assert heartbeat_verdict(health("not_found"), url, "1.5.9").reason == (
        f"no heartbeat at {url}: HTTP 410"
    )
    older = heartbeat_verdict(health("healthy"), url, "1.6.0")
    assert (older.ok, older.detail) == (False, "1.5.9")
    assert older.reason == "the heartbeat answers, but Chroma 1.5.9 runs, not 1.6.0"


# ---- halting: fake steps (a host name -> what the step finds there) ---------------------------


class Steps:
    """The three steps, answering from a table and logging which hosts each got."""

    def __init__(self, failures: dict[tuple[str, str], StepResult] | None = None):
        self.failures = failures or {}
        self.calls: list[tuple[str, list[str]]] = []

    def step(self, name: str):
        def run(hosts: list[str]) -> dict[str, StepResult]:
            self.calls.append((name, list(hosts)))
            found = {host: self.failures.get((name, host), StepResult(ok=True)) for host in hosts}
            if any(result.reason == "refused while preparing" for result in found.values()):
                return {
                    host: result if result.reason == "refused while preparing" else NOT_RUN
                    for host, result in found.items()
                }
            return found

        return run

    def run(self, batches: list[list[str]], max_failures: int = 0):
        rollout = run_rollout(
            batches, max_failures, self.step("deploy"), self.step("proof"), self.step("heartbeat")
        )
        document = json.loads(render_json(rollout))
        jsonschema.validate(document, SCHEMA)
        return rollout, document

    def touched(self) -> list[str]:
        return [host for name, hosts in self.calls if name == "deploy" for host in hosts]


FAIL = StepResult(ok=False, reason="it broke")


def test_every_batch_passes_its_gate_before_the_next_one_starts():
    steps = Steps()
    rollout, document = steps.run([["db1"], ["db2", "db3"], ["db4"]])
    assert steps.calls == [
        ("deploy", ["db1"]), ("proof", ["db1"]), ("heartbeat", ["db1"]),
        ("deploy", ["db2", "db3"]), ("proof", ["db2", "db3"]), ("heartbeat", ["db2", "db3"]),
        ("deploy", ["db4"]), ("proof", ["db4"]), ("heartbeat", ["db4"]),
    ]  # fmt: skip
    assert rollout.exit_code == 0
    assert document["halted"] is None
    assert document["summary"]["proven"] == ["db1", "db2", "db3", "db4"]


def test_a_failed_canary_halts_before_any_other_host_even_with_failures_allowed():
    steps = Steps({("proof", "db1"): FAIL})
    rollout, document = steps.run([["db1"], ["db2"], ["db3"]], max_failures=5)
    assert steps.calls == [("deploy", ["db1"]), ("proof", ["db1"])]
    assert rollout.exit_code == 1
    assert document["halted"] == {
        "host": "db1", "step": "proof", "operation": None, "reason": "it broke",
    }  # fmt: skip
    assert document["summary"]["untouched"] == ["db2", "db3"]
    assert document["summary"]["proven"] == []


def test_a_failure_in_the_second_batch_halts_before_the_third():
    steps = Steps({("deploy", "db3"): StepResult(ok=False, changed=True, reason="no room")})
    rollout, document = steps.run([["db1"], ["db2", "db3"], ["db4"], ["db5"]])
    # The second batch's gate finishes for db2 (it was touched), then the rollout halts.
    assert steps.calls[-2:] == [("proof", ["db2"]), ("heartbeat", ["db2"])]
    assert steps.touched() == ["db1", "db2", "db3"]
    assert document["halted"]["host"] == "db3"
    assert document["summary"] == {
        "changed": ["db3"], "unchanged": ["db1", "db2"], "proven": ["db1", "db2"],
        "failed": ["db3"], "untouched": ["db4", "db5"],
    }  # fmt: skip
    assert document["batches"][2]["seconds"] is None  # never ran
    assert rollout.exit_code == 1


def test_failures_up_to_max_failures_go_on_and_the_next_one_halts():
    steps = Steps({("heartbeat", "db2"): FAIL, ("proof", "db4"): FAIL})
    rollout, document = steps.run([["db1"], ["db2"], ["db3"], ["db4"], ["db5"]], max_failures=1)
    assert steps.touched() == ["db1", "db2", "db3", "db4"]
    assert document["halted"]["host"] == "db4"
    assert document["summary"]["failed"] == ["db2", "db4"]
    assert document["summary"]["untouched"] == ["db5"]
    # A rollout that went past a tolerated failure to the end still exits 1.
    steps = Steps({("heartbeat", "db2"): FAIL})
    rollout, document = steps.run([["db1"], ["db2"], ["db3"]], max_failures=1)
    assert document["halted"] is None and steps.touched() == ["db1", "db2", "db3"]
    assert rollout.exit_code == 1


def test_a_refusal_while_preparing_leaves_the_rest_of_its_batch_untouched_when_it_halts():
    refused = StepResult(ok=False, reason="refused while preparing")
    steps = Steps({("deploy", "db3"): refused})
    _, document = steps.run([["db1"], ["db2", "db3", "db4"], ["db5"]])
    assert steps.calls[-1] == ("deploy", ["db2", "db3", "db4"])  # nothing ran, nothing again
    assert document["summary"]["untouched"] == ["db2", "db4", "db5"]
    assert document["summary"]["failed"] == ["db3"]


def test_a_refusal_while_preparing_within_max_failures_runs_the_rest_of_its_batch_again():
    refused = StepResult(ok=False, reason="refused while preparing")
    steps = Steps({("deploy", "db3"): refused})
    rollout, document = steps.run([["db1"], ["db2", "db3", "db4"], ["db5"]], max_failures=1)
    assert ("deploy", ["db2", "db4"]) in steps.calls
    assert steps.touched()[-1] == "db5"
    assert document["summary"]["proven"] == ["db1", "db2", "db4", "db5"]
    assert rollout.exit_code == 1


def test_a_step_that_reaches_no_host_fails_them_instead_of_trying_for_ever():
    calls = []

    def nothing_ran(hosts):
        calls.append(hosts)
        return dict.fromkeys(hosts, NOT_RUN)

    ok = Steps().step("any")
    rollout = run_rollout([["db1"], ["db2"]], 3, nothing_ran, ok, ok)
    assert calls == [["db1"]]
    assert rollout.hosts["db1"].reason == "the deploy did not run"
    assert rollout.halted_at == "db1"


def test_the_table_names_the_failed_host_its_step_and_reason_and_who_was_never_touched():
    failure = StepResult(
        ok=False, changed=True, reason="persistence proof: FAIL: the canary did not survive "
        "down/up", operation="Persistence proof of chroma: canary, down, up, read back",
    )  # fmt: skip
    steps = Steps({("deploy", "db1"): StepResult(ok=True, changed=True), ("proof", "db1"): failure})
    rollout, _ = steps.run([["db1"], ["db2"], ["db3"]])
    lines = render_table(rollout).splitlines()
    assert lines[0].split() == ["HOST", "BATCH", "DEPLOY", "PROOF", "HEARTBEAT", "RESULT"]
    assert lines[1].split()[:5] == ["db1", "canary", "changed", "fail", "-"]
    assert lines[1].endswith(
        "FAILED at proof (Persistence proof of chroma: canary, down, up, read back): "
        "persistence proof: FAIL: the canary did not survive down/up"
    )
    assert lines[2].split() == ["db2", "2", "-", "-", "-", "never", "touched"]
    assert "never touched: db2, db3" in lines
    assert "changed:       db1" in lines
    assert lines[-1].startswith("halted at db1 (proof); fix it and run the same command again")


def test_a_missing_key_file_fails_its_host_with_pyinfras_line_and_reaches_no_other():
    """pyinfra stops the whole run at connect (a traceback, then ``--> pyinfra error in
    ...: No such private key file``): that host failed with the reason, the other never ran."""
    _, results = recorded("deploy-key-file-missing")
    assert results == {
        "db3.internal": StepResult(
            ok=False, reason="No such private key file: ~/.ssh/id_ed25519_db3"
        ),
        "@local": NOT_RUN,
    }


def test_a_host_without_sftp_fails_with_pyinfras_reason_and_the_operation():
    """The first upload on a host whose sshd has no SFTP subsystem: pyinfra's own line, the
    upload's operation, and the changes made before it (dirs and .gitignore: Success)."""
    _, results = recorded("deploy-sftp-unavailable")
    assert results == {
        "sftpless": StepResult(
            ok=False,
            changed=True,
            reason="Unable to establish SFTP connection. Check that the SFTP subsystem for the "
            "SSH service at sftpless is enabled.",
            operation="Chroma stack | /tmp/rec/proj/docker-compose.yml from "
            "templates/docker-compose.yml.j2",
        )
    }
