"""Read each fact of a host once per run, while nothing on that host has changed.

pyinfra 3 reads a fact again every time an operation asks for it, and a no-op
deploy asks for about a dozen (the same compose file three times). On a fleet
that cost is paid on every host at every cron run. Here the facts a run needs
are read up front in one command (:func:`prefetch`, facts/batch.py), and
:func:`read` answers from that reading for as long as no operation has changed
the host in this run; after a change it reads the host again. Correctness never
depends on the prefetched list: a fact missing from it, or read with other
arguments, is simply read on its own.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

from facts.batch import Batch
from plumbing.pyinfra_internals import changes_so_far

# A fact and the arguments it is read with: one part of a batched read.
Read = tuple[type[FactBase], dict[str, Any]]

# (host name, fact and arguments) -> (changes on the host when read, value)
_read: dict[tuple[str, str], tuple[int, Any]] = {}


def _key(fact_class: type[FactBase], kwargs: dict[str, Any]) -> str:
    arguments = json.dumps(kwargs, sort_keys=True, default=str)
    return f"{fact_class.__module__}.{fact_class.__name__}({arguments})"


def _changes_so_far() -> int | None:
    """How many operations have changed this host in this run; None outside a real run."""
    return changes_so_far(host)


def prefetch(reads: list[Read]) -> None:
    """Read all of ``reads`` in one command, for :func:`read` to answer from."""
    changes = _changes_so_far()
    if changes is None or not reads:
        return
    _remember(reads, host.get_fact(Batch, parts=reads), changes)


def remember_output(reads: list[Read], batch: Batch, stdout_lines: list[str]) -> None:
    """Keep what ``batch`` (whose command read ``reads``) printed, as :func:`prefetch` would.

    For a command that ran the batch after something else (the project lock,
    plumbing/lock.py). Output it cannot read is dropped: each fact is then
    read on its own, as when it was not prefetched.
    """
    changes = _changes_so_far()
    if changes is None or not reads:
        return
    try:
        results = batch.process(stdout_lines)
    except FactProcessError:
        return
    _remember(reads, results, changes)


def _remember(reads: list[Read], results: list[dict[str, Any]], changes: int) -> None:
    for (fact_class, kwargs), result in zip(reads, results, strict=False):
        if result["read"]:
            _read[(host.name, _key(fact_class, kwargs))] = (changes, result["value"])


def forget() -> None:
    """Drop this host's reading: another run changed it meanwhile (plumbing/lock.py)."""
    for key in [key for key in _read if key[0] == host.name]:
        del _read[key]


def read(fact_class: type[FactBase], **kwargs: Any) -> Any:
    """``host.get_fact(fact_class, **kwargs)``, from this run's reading while still true."""
    changes = _changes_so_far()
    if changes is None:
        return host.get_fact(fact_class, **kwargs)
    key = (host.name, _key(fact_class, kwargs))
    cached = _read.get(key)
    if cached is not None and cached[0] == changes:
        return copy.deepcopy(cached[1])  # callers may change what they get
    value = host.get_fact(fact_class, **kwargs)
    _read[key] = (changes, value)
    return copy.deepcopy(value)
