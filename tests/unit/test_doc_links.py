"""Every relative link in README.md and docs/*.md reaches a file, and its #anchor a heading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def links(text: str) -> list[str]:
    """Link targets outside code blocks and code spans."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    return LINK.findall(prose)


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -N for
    repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    bad = []
    for target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{target} (no heading #{anchor} in {dest.name})")
    return bad


def test_the_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "b.md").write_text("# B page\n\n## Step 2: run it\n\n```\n# not a heading\n```\n")
    page = tmp_path / "a.md"
    page.write_text(
        "# A\n[ok](b.md) [ok](b.md#step-2-run-it) [ok](#a) [web](https://example.com/x)\n"
        "`[in code](missing.md)`\n```\n[in a block](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](b.md#not-a-heading) ![img](pic.png)\n"
    )
    assert broken_links(page) == [
        "missing.md (no such file)",
        "b.md#not-a-heading (no heading #not-a-heading in b.md)",
        "pic.png (no such file)",
    ]


def test_every_relative_link_in_the_docs_resolves():
    checked = {page.name: broken_links(page) for page in pages()}
    assert len(checked) > 1 and sum(len(links(p.read_text())) for p in pages()) > 0
    assert {name: bad for name, bad in checked.items() if bad} == {}
