"""The README promises only what the repository has: every file it names or links exists,
every `make` target it names is in the Makefile, every anchor it links is a heading."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ["README.md", "deploy/README.md", "benchmarks/README.md"]
#: Docs whose `file.ext` mentions are ours (deploy/README.md also cites DataHub's sources by path).
OWN_FILES_ONLY = {"README.md", "benchmarks/README.md"}
#: Paths that name places outside the repository (in the image or on a user's machine).
ELSEWHERE = re.compile(r"^(/|~|\.venv|dist/|\.env$|<)")


def _text(doc: str) -> str:
    return (ROOT / doc).read_text()


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_the_docs_name_or_link_exists(doc):
    text = _text(doc)
    base = (ROOT / doc).parent
    links = [m for m in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in m]
    named = [m for m in re.findall(r"`([\w./-]+\.(?:py|yaml|yml|md|txt|sql|sh|toml|cfg))`", text)
             if not ELSEWHERE.match(m)] if doc in OWN_FILES_ONLY else []
    missing = [p for p in links if not (base / p).exists()]
    missing += [p for p in named if not (ROOT / p).exists() and not (base / p).exists()
                and not any(ROOT.glob(f"**/{p}"))]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_make_target_the_docs_name_exists(doc):
    targets = set(re.findall(r"^([\w-]+):", _text("Makefile"), re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", _text(doc)))
    assert named - targets == set()


def test_every_anchor_the_readme_links_is_a_heading():
    text = _text("README.md")
    headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
    anchors = set(re.findall(r"\]\((?:README\.md)?#([\w-]+)\)", text))
    assert anchors - headings == set()
