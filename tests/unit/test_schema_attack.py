"""Attacks on the schema guard (issue 26 §5): each test is a fault found, xfail until fixed."""

from __future__ import annotations

import pytest

from checks.compare import schema_refused

DIGEST = "sha256:" + "3f" * 32


@pytest.mark.xfail(
    strict=True,
    reason="attack: drift's schema_refused line for an image pinned by tag and digest by hand "
    "tells the user to deploy with chroma_version=<the digest's hex>, a version no deploy takes",
)
def test_schema_refused_names_the_tag_of_an_image_pinned_by_digest():
    item = schema_refused(
        {"image": f"chromadb/chroma:1.99.1@{DIGEST}", "name": "fx-chroma-1"}, "1.5.9"
    )
    assert "chroma_version=1.99.1 " in item.actual, item.actual
