"""Knowledge-base articles: Markdown files with YAML front matter, in a folder next to the
config (`knowledge_base.path`).

```
---
title: Rechnungsadresse ändern
language: de            # de | en (default: knowledge_base.default_language)
slug: rechnungsadresse  # default: the file name without .md
tags: [rechnung]
keywords: [Anschrift, Firmenadresse]
audience: public        # public (help pages, widget, anonymous search) | internal (agents)
---
Body in Markdown ...
```

Every problem of every file is collected with its file and line (`check` and a start or
reload refuse the whole set); nothing about an article fails later, at run time."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway import yamlload
from gateway.kb.text import LANGUAGES

AUDIENCES = ("public", "internal")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
_KEYS = ("title", "language", "slug", "tags", "keywords", "audience")
MAX_FILE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Article:
    slug: str
    language: str
    title: str
    body: str  # Markdown
    tags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    audience: str = "public"
    source: str = ""  # the file, relative to the knowledge-base folder

    @property
    def public(self) -> bool:
        return self.audience == "public"

    def url(self) -> str:
        return f"/help/{self.language}/{self.slug}"


@dataclass(frozen=True, slots=True)
class KbProblem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file} (line {self.line})" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass
class Loaded:
    articles: list[Article] = field(default_factory=list)
    problems: list[KbProblem] = field(default_factory=list)


def _key_lines(node: yaml.Node | None, offset: int) -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            out[str(key.value)] = key.start_mark.line + 1 + offset
    return out


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return None


def parse_article(
    text: str, name: str, default_language: str
) -> tuple[Article | None, list[KbProblem]]:
    """One file's article, or its problems (line numbers count from the file's first line)."""
    problems: list[KbProblem] = []

    def bad(message: str, line: int | None = 1) -> tuple[None, list[KbProblem]]:
        problems.append(KbProblem(name, line, message))
        return None, problems

    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return bad("no front matter: the file must start with a line '---'")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        return bad("the front matter is not closed with a line '---'")
    head = "\n".join(lines[1:end])
    body = "\n".join(lines[end + 1 :]).strip("\n")
    try:
        node, data = yamlload.load(head)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        return bad(f"front matter is not valid YAML: {getattr(exc, 'problem', None) or exc}", line)
    if not isinstance(data, dict):
        return bad("the front matter must be a mapping (key: value)", 2)
    at = _key_lines(node, 1)
    for key in data:
        if key not in _KEYS:
            problems.append(
                KbProblem(
                    name, at.get(str(key)), f"unknown key {key!r} (known: {', '.join(_KEYS)})"
                )
            )
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append(KbProblem(name, at.get("title", 1), "missing title"))
    language = data.get("language", default_language)
    if language not in LANGUAGES:
        problems.append(
            KbProblem(name, at.get("language"), f"unknown language {language!r} (de or en)")
        )
    stem = Path(name).stem.lower()
    slug = data.get("slug", stem)
    if not isinstance(slug, str) or not _SLUG.match(slug):
        problems.append(
            KbProblem(
                name,
                at.get("slug", 1),
                f"slug {slug!r} must be 1-80 of a-z 0-9 - (set `slug:` for this file name)",
            )
        )
    audience = data.get("audience", "public")
    if audience not in AUDIENCES:
        problems.append(
            KbProblem(
                name, at.get("audience"), f"audience must be public or internal, not {audience!r}"
            )
        )
    tags, keywords = _strings(data.get("tags")), _strings(data.get("keywords"))
    for key, value in (("tags", tags), ("keywords", keywords)):
        if value is None:
            problems.append(KbProblem(name, at.get(key), f"{key} must be a list of words"))
    if not body.strip():
        problems.append(KbProblem(name, end + 2, "the article has no text"))
    if problems:
        return None, problems
    assert isinstance(title, str) and isinstance(slug, str)
    return (
        Article(
            slug=slug,
            language=str(language),
            title=title.strip(),
            body=body,
            tags=tags or (),
            keywords=keywords or (),
            audience=str(audience),
            source=name,
        ),
        [],
    )


def load_articles(folder: Path, default_language: str = "en") -> Loaded:
    """Every `*.md` under `folder` (sorted, recursively); problems instead of exceptions."""
    out = Loaded()
    if not folder.is_dir():
        out.problems.append(
            KbProblem(str(folder), None, "the knowledge-base folder does not exist")
        )
        return out
    seen: dict[tuple[str, str], str] = {}
    for path in sorted(folder.rglob("*.md")):
        name = path.relative_to(folder).as_posix()
        shown = f"{folder.name}/{name}"
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                out.problems.append(KbProblem(shown, None, f"larger than {MAX_FILE_BYTES} bytes"))
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.problems.append(KbProblem(shown, None, f"cannot read: {exc}"))
            continue
        article, problems = parse_article(text, shown, default_language)
        out.problems.extend(problems)
        if article is None:
            continue
        key = (article.language, article.slug)
        if key in seen:
            out.problems.append(
                KbProblem(
                    shown,
                    _slug_line(text),
                    f"duplicate slug {article.slug!r} in language {article.language}"
                    f" (also {seen[key]})",
                )
            )
            continue
        seen[key] = shown
        out.articles.append(article)
    return out


def _slug_line(text: str) -> int:
    for i, line in enumerate(text.split("\n"), 1):
        if line.startswith("slug:"):
            return i
    return 1
