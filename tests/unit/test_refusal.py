"""A refusal before the run is one line: host, key, what is wrong, what to do; no location."""

from __future__ import annotations

import logging

import click
import pytest
from pyinfra.api.exceptions import PyinfraError

from plumbing.refusal import Refusal, refusal


def test_refusal_under_the_cli_prints_once_without_an_internal_file_and_line(caplog):
    from pyinfra_cli.exceptions import CliError

    error = refusal("db1", "chroma_port: 'abc' is not allowed; use a whole number")
    assert isinstance(error, Refusal)
    assert isinstance(error, PyinfraError)  # deploy-file loader lets it through
    assert isinstance(error, CliError)  # the CLI shows it as it is, not wrapped
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        with pytest.raises(CliError) as raised:
            raise error
        raised.value.show()
    assert [click.unstyle(record.getMessage()) for record in caplog.records] == [
        "--> pyinfra error: db1: chroma_port: 'abc' is not allowed; use a whole number"
    ]
    assert raised.value.exit_code == 1
