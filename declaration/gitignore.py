"""The project's .gitignore block: which lines are ours, when they are in order, the repair.

Pure functions over lists of lines, shared by the operation (operations/project.py)
and drift's comparison (checks/compare.py), so both judge a file alike.

Git uses the last pattern that matches a path, so ``logs/*`` after
``!logs/.gitkeep`` ignores the ``.gitkeep`` again: presence alone is not the
state. Our lines are matched literally; the user's own lines are never changed,
moved among themselves or removed.
"""

from __future__ import annotations

GITIGNORE_HEADER = "# chroma-deploy: keep the data dirs, not their contents"
GITKEEP = "/.gitkeep"


def gitignore_lines(dir_names: tuple[str, ...], secrets_dir: str | None = None) -> list[str]:
    """The lines chroma-deploy owns in the project's .gitignore, in the order it writes them."""
    lines = [GITIGNORE_HEADER]
    for name in dir_names:
        lines += [f"{name}/*", f"!{name}{GITKEEP}"]
    if secrets_dir:
        lines.append(f"{secrets_dir}/")
    # restore.py moves data aside next to the data dir and keeps its markers here.
    lines += [f"/{dir_names[0]}.before-restore-*/", "/.chroma-deploy/"]
    return lines


def ordered_pairs(lines: list[str]) -> list[tuple[str, str]]:
    """``(ignore, keep)`` for each ``!<dir>/.gitkeep`` line whose ``<dir>/*`` is declared too."""
    pairs = []
    for line in lines:
        if line.startswith("!") and line.endswith(GITKEEP):
            ignore = f"{line[1 : -len(GITKEEP)]}/*"
            if ignore in lines:
                pairs.append((ignore, line))
    return pairs


def _last(current: list[str], line: str) -> int:
    return len(current) - 1 - current[::-1].index(line)


def problems(current: list[str] | None, lines: list[str]) -> list[tuple[str, str]]:
    """``(expected, actual)`` for each declared line absent, then each pair out of order.

    A pair is in order when the last ``<dir>/*`` comes before the last
    ``!<dir>/.gitkeep``: that is what git reads. The other lines only need to be there.
    """
    found = current or []
    present = set(found)
    result = [(line, "absent") for line in lines if line not in present]
    for ignore, keep in ordered_pairs(lines):
        if ignore in present and keep in present and _last(found, ignore) > _last(found, keep):
            result.append((f"{ignore} before {keep}", f"{ignore} after {keep}"))
    return result


def repaired(current: list[str] | None, lines: list[str]) -> list[str]:
    """The file with our block whole and in order, where its first line was (else at the end).

    Every line equal to one of ours is taken out and the declared block goes in at
    the place of the first of them: a block that lost a line gets it back in place,
    a line appended after its negation moves back into the block. The user's lines
    keep their text and their order.
    """
    found = current or []
    ours = set(lines)
    first = next((index for index, line in enumerate(found) if line in ours), len(found))
    return [*found[:first], *lines, *(line for line in found[first:] if line not in ours)]
