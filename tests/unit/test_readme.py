"""The README is a first screen: short, linking every docs/ page, showing what up.sh prints."""

from __future__ import annotations

import re

from declaration.settings import load_settings
from plumbing.cli import PyinfraCommand
from plumbing.summary import ROOT, summary

README = ROOT / "README.md"


def test_readme_stays_under_200_lines():
    assert len(README.read_text().splitlines()) < 200


def test_readme_links_every_docs_page_and_only_pages_that_exist():
    linked = set(re.findall(r"\]\((docs/[^)]+\.md)\)", README.read_text()))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert linked == pages


def test_docs_pages_link_back_and_to_pages_that_exist():
    for page in (ROOT / "docs").glob("*.md"):
        text = page.read_text()
        assert "](../README.md)" in text, page.name
        for target in re.findall(r"\]\(([a-z-]+\.md)\)", text):
            assert (page.parent / target).is_file(), (page.name, target)


def test_readme_shows_what_up_sh_prints_with_the_defaults(monkeypatch):
    monkeypatch.chdir(ROOT)  # where scripts/up.sh runs the deploy
    command = PyinfraCommand(
        inventory="@local",
        operations=("deploy.py",),
        data=("chroma_image_source=auto",),
        group_data=(),
        chdir=None,
        converges=True,
    )
    settings = load_settings({})
    printed = summary(settings, settings.version, command).replace(str(ROOT), "<repo>")
    assert printed in README.read_text()
