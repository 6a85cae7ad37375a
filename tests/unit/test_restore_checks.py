"""What restore.py refuses, judged from the archive facts recorded on a real host.

Each case is a tests/fixtures/facts/archive.BackupArchive/ recording: the fact
read from a real archive (whole, damaged, of another data dir, ...), and here
the one line data_safety.archive_problem makes of it, before anything changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from operations.data_safety import archive_problem

CASES = Path(__file__).resolve().parent.parent / "fixtures" / "facts" / "archive.BackupArchive"


def judged(case: str, data_dir: str = "chroma_data") -> tuple[dict | None, str | None]:
    fixture = json.loads((CASES / f"{case}.json").read_text())
    return archive_problem(fixture["args"]["archive"], fixture["fact"], data_dir)


def test_a_whole_archive_of_this_data_dir_is_restorable_and_its_manifest_read():
    manifest, problem = judged("present")
    assert problem is None
    assert manifest is not None and (manifest["project"], manifest["version"]) == ("fx", "1.5.9")


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("no_archive", "no archive at /tmp/fx/backups/missing-20261125T041509Z.tar.gz: nothing "
                       "was changed; name a .tar.gz that backup.py wrote"),
        ("no_checksum_or_manifest", "has no .sha256 or .json beside it (backup.py writes both): "
                                    "nothing was changed; put them beside the archive"),
        ("checksum_differs", "damaged-20261125T041509Z.tar.gz does not match its .sha256 "
                             "(damaged, or changed since backup.py wrote it): nothing was changed"),
        ("unreadable_by_tar", "matches its .sha256 but tar cannot read it to its end: nothing "
                              "was changed; name another archive"),
        ("another_data_dir", "holds vectors/, not chroma_data/ (an archive of another project: "
                             "its manifest names other): nothing was changed"),
    ],
)  # fmt: skip
def test_each_problem_is_one_line_naming_the_key_and_what_to_do(case, said):
    _, problem = judged(case)
    assert problem is not None and problem.startswith("chroma_restore_archive: ")
    assert said in problem and "\n" not in problem


def test_an_archive_is_judged_against_this_hosts_data_dir_name():
    assert judged("another_data_dir", data_dir="vectors")[1] is None
    assert "holds chroma_data/, not vectors/" in (judged("present", data_dir="vectors")[1] or "")


@pytest.mark.parametrize("manifest", ["not json", "[]", '{"version": "1.5.9"}'])
def test_a_manifest_backup_py_did_not_write_is_refused(manifest):
    fixture = json.loads((CASES / "present.json").read_text())
    found = dict(fixture["fact"], manifest=manifest)
    _, problem = archive_problem(fixture["args"]["archive"], found, "chroma_data")
    assert problem is not None and "is not the manifest backup.py writes" in problem
