"""Language handling for the knowledge-base search (pure): tokens, stop words, Snowball
stems, German compound parts and character trigrams.

A German compound such as "Rechnungsadresse" is split into the parts the corpus knows
("rechnung" + "adresse", with or without a linking -s-/-es-/-n-/-en-), and both the whole
word and its parts are indexed and searched: "Rechnung … Adresse" finds the compound and
the compound finds "Rechnung … Adresse"."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

LANGUAGES = ("de", "en")
_STEMMERS = {"de": "german", "en": "english"}
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)

_STOP_EN = """a about above after again against all am an and any are as at be because been
        before being below between both but by can could did do does doing done down during
        each few for from further had has have having he her here hers him his how i if in
        into is it its itself just me more most my myself no nor not now of off on once only
        or other our ours out over own same she should so some such than that the their them
        then there these they this those through to too under until up very was we were what
        when where which while who whom why will with would you your yours yourself get got
        please hi hello thanks thank i'm i've can't don't doesn't"""
_STOP_DE = """aber alle allem allen aller alles als also am an ander andere anderem anderen
        anderer anderes auch auf aus bei bin bis bist da damit dann das dass dein deine dem
        den der des dessen dich die dies diese diesem diesen dieser dieses dir doch dort du
        durch ein eine einem einen einer eines einig einige er es etwas euch euer eure für
        gegen gewesen hab habe haben hat hatte hier hin hinter ich ihm ihn ihnen ihr ihre im
        in indem ins ist jede jedem jeden jeder jedes jene jetzt kann kein keine können
        könnte machen man manche mein meine meinem meinen meiner mich mir mit muss musste
        nach nicht nichts noch nun nur ob oder ohne sehr sein seine sich sie sind so solche
        soll sollte sondern sonst über um und uns unser unter viel vom von vor wann war waren
        warum was weg weil weiter welche wenn wer werde werden wie wieder will wir wird wo
        wollen würde zu zum zur zwar zwischen bitte hallo danke guten tag"""
STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(_STOP_EN.split()),
    "de": frozenset(_STOP_DE.split()),
}
_LINKS = ("s", "es", "n", "en", "e", "")  # German linking elements (Fugen), longest first
MIN_PART = 3


def fold(text: str) -> str:
    """Lower case without accents (ä → a, é → e, ß → ss): what stems are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=4)
def _stemmer(lang: str) -> Any:
    # Imported on first use: it loads every language (a start without articles skips it).
    import snowballstemmer

    return snowballstemmer.stemmer(_STEMMERS.get(lang, "english"))


@lru_cache(maxsize=65536)
def stem(word: str, lang: str) -> str:
    """The Snowball stem of a lower-case word, accents folded."""
    return fold(_stemmer(lang).stemWord(word))


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int
    word: str  # lower case
    stem: str
    parts: tuple[str, ...]  # stems of a compound's parts; () for a simple word
    stop: bool


def words(text: str) -> Iterator[tuple[int, int, str]]:
    for match in _WORD.finditer(text):
        yield match.start(), match.end(), match.group(0).casefold()


def split_compound(word: str, known: frozenset[str], depth: int = 0) -> list[str] | None:
    """`word` as known words joined (maybe with linking elements), longest head first;
    None when it is no such compound. `known` holds folded words of the corpus."""
    if depth > 3:
        return None
    n = len(word)
    for cut in range(n - MIN_PART, MIN_PART - 1, -1):
        head, rest = word[:cut], word[cut:]
        if head not in known:
            continue
        for link in _LINKS:
            if not rest.startswith(link):
                continue
            tail = rest[len(link) :]
            if len(tail) < MIN_PART:
                continue
            if tail in known:
                return [head, tail]
            deeper = split_compound(tail, known, depth + 1)
            if deeper:
                return [head, *deeper]
    return None


class Analyzer:
    """Turns text of one language into tokens; `known` are the words compounds split into."""

    def __init__(self, lang: str, known: Iterable[str] = ()) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self.stop = STOP_WORDS[self.lang]
        self.known = frozenset(k for k in known if len(k) >= MIN_PART)
        self._parts: dict[str, tuple[str, ...]] = {}

    def parts(self, folded: str) -> tuple[str, ...]:
        """The stems of a German compound's parts, () for anything else."""
        if self.lang != "de" or len(folded) < 2 * MIN_PART + 1:
            return ()
        cached = self._parts.get(folded)
        if cached is None:
            split = split_compound(folded, self.known - {folded})
            cached = tuple(stem(p, "de") for p in split) if split else ()
            self._parts[folded] = cached
        return cached

    def tokens(self, text: str) -> list[Token]:
        out: list[Token] = []
        for start, end, word in words(text):
            is_stop = word in self.stop or len(word) < 2
            folded = fold(word)
            out.append(
                Token(
                    start,
                    end,
                    word,
                    stem(word, self.lang),
                    () if is_stop else self.parts(folded),
                    is_stop,
                )
            )
        return out

    def terms(self, text: str) -> list[str]:
        """Stems and compound parts of the words that are no stop words."""
        out: list[str] = []
        for token in self.tokens(text):
            if token.stop:
                continue
            out.append(token.stem)
            out.extend(p for p in token.parts if p != token.stem)
        return out


def corpus_words(texts: Iterable[str]) -> set[str]:
    """The folded words of some texts (the parts a compound may be split into)."""
    out: set[str] = set()
    for text in texts:
        out.update(fold(w) for _, _, w in words(text))
    return out


def trigrams(term: str) -> list[str]:
    padded = f" {term} "
    return [padded[i : i + 3] for i in range(len(padded) - 2)]


def detect_language(text: str) -> str | None:
    """de or en by the stop words a text uses; None when it does not tell."""
    counts = {lang: 0 for lang in LANGUAGES}
    for _, _, word in words(text):
        for lang in LANGUAGES:
            if word in STOP_WORDS[lang]:
                counts[lang] += 1
    de, en = counts["de"], counts["en"]
    if de == en:
        return None
    return "de" if de > en else "en"
