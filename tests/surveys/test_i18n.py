"""Texts for customers: German and English catalogs, overrides, the language per contact,
and Babel's number and date formatting."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, load_config_text
from gateway.i18n import Texts, catalog
from tests.gateway.conftest import base_config, config_text


@pytest.mark.parametrize(
    ("attributes", "default", "expected"),
    [
        ({}, "en", "en"),
        ({}, "de", "de"),
        # the widget's browser language
        ({"browser_language": "de-AT"}, "en", "de"),
        ({"browser_language": "en-GB"}, "de", "en"),
        # Telegram's language_code, and an attribute set through the API, both `language`
        ({"language": "de"}, "en", "de"),
        ({"language": "DE_ch"}, "en", "de"),
        # an explicit language beats the browser's
        ({"language": "en", "browser_language": "de-DE"}, "de", "en"),
        # an unsupported language falls through to the next source, then the default
        ({"language": "es", "browser_language": "de"}, "en", "de"),
        ({"language": "es"}, "de", "de"),
        ({"language": ""}, "de", "de"),
        ({"language": "fr", "browser_language": "it"}, "en", "en"),
    ],
)
def test_language_per_contact(attributes: dict[str, Any], default: str, expected: str) -> None:
    assert Texts(default=default).language_for(attributes) == expected


def test_both_catalogs_have_every_text() -> None:
    de, en = catalog("de"), catalog("en")
    assert set(de) == set(en)
    assert "acknowledgement" in en and "survey.csat.question" in en
    assert de["survey.thanks"] != en["survey.thanks"]


def test_an_override_wins_for_its_language_only() -> None:
    texts = Texts({"de": {"survey.thanks": "Merci, {name}!"}}, default="de")
    assert texts.text("survey.thanks", "de", name="Eva") == "Merci, Eva!"
    assert texts.text("survey.thanks", "en") == "Thank you for your feedback!"
    # a placeholder without a value stays empty, never raises
    assert texts.text("survey.thanks", "de") == "Merci, !"


def test_babel_formats_numbers_and_dates_per_language() -> None:
    assert Texts.number(1234.5, "de") == "1.234,5"
    assert Texts.number(1234.5, "en") == "1,234.5"
    at = 1_767_366_240.0  # 2026-01-02 15:04 UTC
    assert Texts.datetime(at, "de", "Europe/Berlin") == "02.01.2026, 16:04:00"
    assert Texts.datetime(at, "en") == "Jan 2, 2026, 3:04:00\u202fPM"


def test_config_overrides_are_checked(tmp_path: Any) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["texts"] = {"default_language": "de", "de": {"survey.thankz": "x"}}
    with pytest.raises(ConfigError) as err:
        load_config_text(config_text(cfg))
    assert any(
        p.path.startswith("texts.de") and "unknown text" in p.message for p in err.value.problems
    )
    cfg["texts"] = {"default_language": "de", "de": {"survey.thanks": "Danke!"}}
    loaded = load_config_text(config_text(cfg))
    assert loaded.config.texts.overrides()["de"] == {"survey.thanks": "Danke!"}
