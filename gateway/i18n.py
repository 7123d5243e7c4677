"""Texts for customers in their language, with Babel.

The catalogs are gettext `.po` files kept in the repository (`gateway/locale/<lang>/
LC_MESSAGES/switchboard.po`), read at start with `babel.messages.pofile.read_po`: no build
step. A message id is a key (`survey.csat.question`); the config overrides any text per
language (`texts: {de: {survey.thanks: ...}}`). Numbers and dates are formatted by Babel
in the customer's locale.

The language is chosen per contact (`language_for`): the `language` attribute (set through
the API, or by a channel that knows it, e.g. Telegram's `language_code`), else the web chat
visitor's browser language (`browser_language`), else the configured default.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from babel.dates import format_datetime, get_timezone
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

SUPPORTED: tuple[str, ...] = ("de", "en")
FALLBACK = "en"
# Contact attributes that name a language, strongest first.
LANGUAGE_ATTRIBUTES: tuple[str, ...] = ("language", "browser_language")


def primary(tag: str | None) -> str | None:
    """The supported language a tag such as `de-AT`, `en_GB` or `DE` names, or None."""
    if not isinstance(tag, str):
        return None
    head = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return head if head in SUPPORTED else None


def preferred_language(attributes: Mapping[str, Any] | None) -> str | None:
    """The supported language a contact's attributes name (strongest first), or None."""
    for key in LANGUAGE_ATTRIBUTES:
        found = primary((attributes or {}).get(key))
        if found is not None:
            return found
    return None


@cache
def catalog(language: str) -> dict[str, str]:
    """The shipped texts of one language: message id → text (untranslated ids left out)."""
    path = resources.files("gateway") / "locale" / language / "LC_MESSAGES" / "switchboard.po"
    with path.open("rb") as fh:
        parsed = read_po(fh, locale=language)
    return {
        str(m.id): str(m.string)
        for m in parsed
        if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string
    }


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


class Texts:
    """The shipped catalogs plus the config's overrides, and the default language."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        default: str = FALLBACK,
    ) -> None:
        self.overrides = {lang: dict(texts) for lang, texts in (overrides or {}).items()}
        self.default = primary(default) or FALLBACK

    def language_for(self, attributes: Mapping[str, Any] | None) -> str:
        """The language to write to a contact in, from its attributes."""
        return preferred_language(attributes) or self.default

    def template(self, key: str, language: str) -> str:
        """The text of `key`: the config's override, else the catalog, else English."""
        lang = primary(language) or self.default
        for source in (self.overrides.get(lang, {}), catalog(lang), catalog(FALLBACK)):
            if key in source:
                return source[key]
        raise KeyError(f"no text {key!r}")

    def text(self, key: str, language: str, **params: Any) -> str:
        """The text filled in; a placeholder without a value is left empty."""
        return self.template(key, language).format_map(_Blank(params))

    @staticmethod
    def number(value: float, language: str, digits: int = 1) -> str:
        return str(format_decimal(value, format=f"#,##0.{'#' * digits}", locale=language))

    @staticmethod
    def datetime(at: float, language: str, tz: str = "UTC") -> str:
        return str(
            format_datetime(
                datetime.fromtimestamp(at, UTC), "medium", tzinfo=get_timezone(tz), locale=language
            )
        )
