"""scripts/up.sh's closing lines come from the run's own --data, read as pyinfra reads it."""

from __future__ import annotations

import pytest

from declaration.settings import SettingsError
from plumbing.summary import data_arguments, settings_for, summary


def test_data_pairs_are_taken_from_both_spellings_and_nothing_else():
    argv = ["--data", "chroma_port=8001", "-v", "--data=chroma_owner=chroma", "--json"]
    assert data_arguments(argv) == ["chroma_port=8001", "chroma_owner=chroma"]


def test_summary_names_the_declared_url_data_dir_and_backup_dir():
    pairs = ["chroma_port=8001", "chroma_project_dir=/srv/kb", "chroma_backup_dir=/b"]
    text = summary(settings_for(pairs), pairs)
    assert "URL:          http://127.0.0.1:8001;" in text
    assert "data dir:     /srv/kb/chroma_data " in text
    assert "drift.py @local --data chroma_port=8001 --data chroma_project_dir=/srv/kb" in text
    assert "(archives in /b)" in text


def test_a_value_the_deploy_would_refuse_is_refused_here_too():
    with pytest.raises(SettingsError):
        settings_for(["chroma_port=abc"])
