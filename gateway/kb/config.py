"""`knowledge_base:` in the config, and loading its articles for a config being loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.kb.articles import KbProblem, load_articles
from gateway.kb.search import KnowledgeBase

# The queue the knowledge-base bot holds a conversation in while it answers (no agent serves
# it, so routing never assigns it); reserved: a configured queue may not take the name.
KB_BOT_QUEUE = "kb-bot"


class KnowledgeBaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        "kb/",
        description="Folder of the articles (*.md with front matter), relative to the config "
        "file. Missing: the knowledge base is empty (`check` warns).",
    )
    default_language: Literal["de", "en"] = Field(
        "en", description="The language of an article whose front matter names none."
    )
    bot_min_score: float = Field(
        1.5,
        gt=0,
        description="The knowledge-base bot (`bot: knowledge_base` on a routing rule) "
        "answers only with an article scoring at least this (BM25F; a good match of a "
        "short question scores about 1.5-5, a stray word below 1.3).",
    )
    handoff_keywords: list[str] = Field(
        default_factory=lambda: ["agent", "human", "person", "mensch", "mitarbeiter"],
        description="A first message that is one of these words goes to a person at "
        "once, without the bot (case-insensitive).",
    )
    search_per_minute: int = Field(
        60,
        ge=1,
        description="Anonymous searches (GET /v1/kb/search without a token) per client "
        "address and minute; more get 429.",
    )


def folder_of(cfg: KnowledgeBaseConfig, base_dir: Path | None) -> Path:
    path = Path(cfg.path)
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


def build(
    cfg: KnowledgeBaseConfig, base_dir: Path | None
) -> tuple[KnowledgeBase, list[KbProblem], bool]:
    """(the knowledge base, its articles' problems, whether the folder is missing)."""
    folder = folder_of(cfg, base_dir)
    if not folder.is_dir():
        return KnowledgeBase([], cfg.default_language), [], True
    loaded = load_articles(folder, cfg.default_language)
    return KnowledgeBase(loaded.articles, cfg.default_language), loaded.problems, False
