"""Article files: front matter read with its lines; every broken file named with its line."""

from __future__ import annotations

from pathlib import Path

from gateway.kb.articles import load_articles


def write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


GOOD = "---\ntitle: Hello\nlanguage: en\ntags: [a, b]\nkeywords: x, y\n---\nBody text.\n"


def test_a_good_article(tmp_path: Path) -> None:
    write(tmp_path, "en/hello.md", GOOD)
    loaded = load_articles(tmp_path)
    assert loaded.problems == []
    (article,) = loaded.articles
    assert (article.slug, article.language, article.title) == ("hello", "en", "Hello")
    assert article.tags == ("a", "b") and article.keywords == ("x", "y")
    assert article.public and article.body == "Body text."


def test_broken_articles_are_reported_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "a-no-front.md", "# Just text\n")
    write(tmp_path, "b-no-title.md", "---\nlanguage: en\n---\nText\n")
    write(tmp_path, "c-language.md", "---\ntitle: T\nlanguage: fr\n---\nText\n")
    write(tmp_path, "d-yaml.md", "---\ntitle: T\ntags: [a, b\n---\nText\n")
    write(tmp_path, "e-dup.md", "---\ntitle: One\nslug: same\n---\nText\n")
    write(tmp_path, "f-dup.md", "---\ntitle: Two\nslug: same\n---\nText\n")
    write(tmp_path, "g-unknown.md", "---\ntitle: T\naudince: public\n---\nText\n")
    write(tmp_path, "h-audience.md", "---\ntitle: T\n\naudience: secret\n---\nText\n")
    loaded = load_articles(tmp_path, "en")
    found = {(p.file.split("/")[-1], p.line): p.message for p in loaded.problems}
    name = tmp_path.name
    assert all(p.file.startswith(f"{name}/") for p in loaded.problems)
    assert "front matter" in found[("a-no-front.md", 1)]
    assert found[("b-no-title.md", 1)] == "missing title"
    assert "unknown language 'fr'" in found[("c-language.md", 3)]
    assert any(f == "d-yaml.md" and "YAML" in m for (f, _), m in found.items())
    assert "duplicate slug 'same'" in found[("f-dup.md", 3)]
    assert "unknown key 'audince'" in found[("g-unknown.md", 3)]
    assert "audience" in found[("h-audience.md", 4)]
    assert [a.slug for a in loaded.articles] == ["same"]


def test_a_missing_folder_is_a_problem(tmp_path: Path) -> None:
    loaded = load_articles(tmp_path / "nope")
    assert loaded.articles == [] and "does not exist" in loaded.problems[0].message
