"""The knowledge-base index and its search (pure, no I/O): BM25F over title, keywords
(with tags) and body, per language, on Snowball stems with German compound parts; a query
word the index does not know is matched to the nearest known terms (typos: Levenshtein
distance 1, or 2 for long words) or, while it is being typed, to the terms it begins.
Snippets are HTML-escaped text with the matching words in `<mark>`."""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.kb.articles import Article
from gateway.kb.text import LANGUAGES, Analyzer, Token, corpus_words, fold

FIELDS = {"title": 3.0, "keywords": 2.5, "body": 1.0}
K1, B = 1.2, 0.75
SNIPPET_CHARS = 220
MAX_QUERY_CHARS = 500
MAX_QUERY_TERMS = 24

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(r"(^|\n)\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)|[*_`~]{1,3}|<[^>]{0,200}>")
_SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n+")


def plain_text(markdown_text: str) -> str:
    """Markdown as plain text, for snippets (links keep their words)."""
    text = _LINK.sub(r"\1", markdown_text)
    text = _MARKUP.sub(lambda m: m.group(1) or "", text)
    return re.sub(r"[ \t]+", " ", text).strip()


@dataclass(frozen=True, slots=True)
class Hit:
    article: Article
    score: float
    title_html: str
    snippet_parts: Segments

    @property
    def snippet_html(self) -> str:
        return to_html(self.snippet_parts)

    def to_api(self) -> dict[str, object]:
        a = self.article
        return {
            "slug": a.slug,
            "language": a.language,
            "title": a.title,
            "title_html": self.title_html,
            "snippet_html": self.snippet_html,
            "url": a.url() if a.public else None,
            "audience": a.audience,
            "tags": list(a.tags),
            "score": round(self.score, 3),
        }


@dataclass(slots=True)
class _Doc:
    article: Article
    tf: dict[str, Counter[str]]
    length: dict[str, int]
    text: str  # plain body


class _LanguageIndex:
    def __init__(self, lang: str, articles: list[Article]) -> None:
        self.lang = lang
        texts: list[str] = []
        for a in articles:
            texts += [a.title, " ".join(a.keywords + a.tags), a.body]
        self.analyzer = Analyzer(lang, corpus_words(texts))
        self.docs: list[_Doc] = []
        df: Counter[str] = Counter()
        for a in articles:
            body = plain_text(a.body)
            fields = {
                "title": self.analyzer.terms(a.title),
                "keywords": self.analyzer.terms(" , ".join(a.keywords + a.tags)),
                "body": self.analyzer.terms(body),
            }
            tf = {name: Counter(terms) for name, terms in fields.items()}
            self.docs.append(_Doc(a, tf, {n: len(t) for n, t in fields.items()}, body))
            df.update({t for terms in fields.values() for t in terms})
        n = max(1, len(self.docs))
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.vocab = sorted(self.idf)
        self.avg = {name: max(1.0, sum(d.length[name] for d in self.docs) / n) for name in FIELDS}

    def expand(self, term: str, last: bool) -> list[tuple[str, float]]:
        """Index terms a query term stands for, each with a weight."""
        if term in self.idf:
            return [(term, 1.0)]
        from rapidfuzz import process  # on first use: a start without articles skips it
        from rapidfuzz.distance import Levenshtein

        out: list[tuple[str, float]] = []
        if len(term) >= 4:
            limit = 1 if len(term) <= 6 else 2
            for found, distance, _ in process.extract(
                term, self.vocab, scorer=Levenshtein.distance, score_cutoff=limit, limit=3
            ):
                out.append((found, 0.85 if distance == 1 else 0.6))
        if len(term) >= 3 and (last or not out):
            known = {t for t, _ in out}
            prefixed = [t for t in self.vocab if t.startswith(term) and t not in known]
            out += [(t, 0.7) for t in prefixed[:5]]
        return out

    def score(self, query: list[tuple[str, float]]) -> list[tuple[float, _Doc, set[str]]]:
        results: list[tuple[float, _Doc, set[str]]] = []
        wanted = {t for t, _ in query}
        for doc in self.docs:
            total = 0.0
            matched: set[str] = set()
            for term, weight in query:
                tf = 0.0
                for name, boost in FIELDS.items():
                    count = doc.tf[name].get(term, 0)
                    if count:
                        norm = 1 - B + B * doc.length[name] / self.avg[name]
                        tf += boost * count / norm
                if tf:
                    matched.add(term)
                    total += weight * self.idf[term] * tf / (K1 + tf)
            if total > 0:
                coverage = len(matched) / max(1, len(wanted))
                results.append((total * (0.5 + 0.5 * coverage), doc, matched))
        return results


class KnowledgeBase:
    """The articles of one load, indexed per language."""

    def __init__(self, articles: Iterable[Article], default_language: str = "en") -> None:
        self.articles = list(articles)
        self.default_language = default_language
        self._by_key = {(a.language, a.slug): a for a in self.articles}
        self._indexes = {
            lang: _LanguageIndex(lang, [a for a in self.articles if a.language == lang])
            for lang in LANGUAGES
        }

    def __len__(self) -> int:
        return len(self.articles)

    def get(self, lang: str, slug: str) -> Article | None:
        return self._by_key.get((lang, slug))

    def listing(self, lang: str, public_only: bool = True) -> list[Article]:
        return sorted(
            (a for a in self.articles if a.language == lang and (a.public or not public_only)),
            key=lambda a: fold(a.title),
        )

    def search(
        self,
        query: str,
        lang: str | None = None,
        *,
        internal: bool = False,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[Hit]:
        """The best articles for `query`, best first; `internal` includes agents' articles."""
        query = query[:MAX_QUERY_CHARS]
        langs = [lang] if lang in LANGUAGES else list(LANGUAGES)
        found: list[tuple[float, _Doc, set[str], _LanguageIndex]] = []
        for code in langs:
            index = self._indexes[code]
            if not index.docs:
                continue
            tokens = [t for t in index.analyzer.tokens(query) if not t.stop][:MAX_QUERY_TERMS]
            terms: list[tuple[str, float]] = []
            ends_in_word = bool(query) and query[-1].isalnum()
            for i, token in enumerate(tokens):
                last = ends_in_word and i == len(tokens) - 1
                for term in (token.stem, *token.parts):
                    terms += index.expand(term, last)
            merged: dict[str, float] = {}
            for term, weight in terms:
                merged[term] = max(weight, merged.get(term, 0.0))
            for score, doc, matched in index.score(list(merged.items())):
                if internal or doc.article.public:
                    found.append((score, doc, matched, index))
        found.sort(key=lambda f: (-f[0], f[1].article.title))
        return [
            Hit(
                doc.article,
                score,
                highlight(doc.article.title, index.analyzer.tokens(doc.article.title), matched),
                snippet(doc.text, index.analyzer, matched),
            )
            for score, doc, matched, index in found[:limit]
            if score >= min_score
        ]


def _marks(token: Token, matched: set[str]) -> bool:
    return not token.stop and (token.stem in matched or any(p in matched for p in token.parts))


Segments = tuple[tuple[str, bool], ...]


def segments(text: str, tokens: list[Token], matched: set[str]) -> Segments:
    """`text` cut into (piece, is a match) pairs."""
    out: list[tuple[str, bool]] = []
    at = 0
    for token in tokens:
        if _marks(token, matched):
            if token.start > at:
                out.append((text[at : token.start], False))
            out.append((text[token.start : token.end], True))
            at = token.end
    if at < len(text):
        out.append((text[at:], False))
    return tuple(out)


def to_html(parts: Segments) -> str:
    """Segments HTML-escaped, the matches in <mark>."""
    return "".join(
        f"<mark>{html.escape(piece)}</mark>" if marked else html.escape(piece)
        for piece, marked in parts
    )


def highlight(text: str, tokens: list[Token], matched: set[str]) -> str:
    """`text` HTML-escaped, with the matching words in <mark>."""
    return to_html(segments(text, tokens, matched))


def snippet(text: str, analyzer: Analyzer, matched: set[str]) -> Segments:
    """The passage of `text` with the most matching words, about SNIPPET_CHARS long."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    if not sentences:
        return ()
    best, best_score = 0, -1
    for i, sentence in enumerate(sentences):
        hits = {t.stem for t in analyzer.tokens(sentence) if _marks(t, matched)}
        if len(hits) > best_score:
            best, best_score = i, len(hits)
    if best_score <= 0:
        best = 0
    passage = sentences[best]
    j = best + 1
    while len(passage) < SNIPPET_CHARS // 2 and j < len(sentences):
        passage += " " + sentences[j]
        j += 1
    cut = passage
    if len(passage) > SNIPPET_CHARS:
        cut = passage[:SNIPPET_CHARS].rsplit(" ", 1)[0]
    more = " …" if len(cut) < len(passage) or j < len(sentences) else ""
    lead = "… " if best > 0 else ""
    parts = segments(cut, analyzer.tokens(cut), matched)
    return ((lead, False),) * bool(lead) + parts + ((more, False),) * bool(more)
