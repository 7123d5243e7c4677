"""Invitation rules are checked with the rest of the config (`switchboard check`): each
problem names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.webchat.settings import WebchatSettings
from gateway.config import ConfigError, load_config_text
from tests.gateway.conftest import base_config, config_text


def with_invitations(tmp_path: Path, invitations: list[dict[str, Any]]) -> str:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["channels"].append(
        {
            "name": "webchat",
            "type": "webchat",
            "secret": "test-webchat-secret-0123456789",
            "allowed_origins": ["*"],
            "invitations": invitations,
        }
    )
    return config_text(cfg)


def test_wrong_invitations_are_refused_with_their_key(tmp_path: Path) -> None:
    bad = [{"when": {"url": "/p*", "seconds_on_page": -1}, "text": {"fr": "Bonjour"}}]
    with pytest.raises(ConfigError) as err:
        load_config_text(with_invitations(tmp_path, bad))
    text = str(err.value)
    assert "channels[1].invitations[0].when.seconds_on_page" in text
    assert "channels[1].invitations[0].text" in text and "'fr' is not one of de, en" in text
    twice = [{"name": "a", "text": {"de": "x"}}, {"name": "a", "text": {"en": "y"}}]
    with pytest.raises(ConfigError) as err:
        load_config_text(with_invitations(tmp_path, twice))
    assert "two invitations are named 'a'" in str(err.value)


def test_unnamed_invitations_are_numbered() -> None:
    settings = WebchatSettings.model_validate(
        {
            "secret": "test-webchat-secret-0123456789",
            "allowed_origins": ["*"],
            "invitations": [
                {"when": {"url": "/pricing*"}, "text": {"de": "Hallo", "en": "Hello"}},
                {"name": "cart", "text": {"en": "Need help with your order?"}},
            ],
        }
    )
    assert [i.name for i in settings.invitations] == ["invitation-1", "cart"]
    assert settings.invitations[1].when.seconds_on_page == 0


def test_an_invitation_may_opt_in_to_times_nobody_can_answer(tmp_path: Path) -> None:
    rule = {"name": "note", "when": {"also_when_unavailable": True}, "text": {"en": "Write us"}}
    settings = WebchatSettings.model_validate(
        {
            "secret": "test-webchat-secret-0123456789",
            "allowed_origins": ["*"],
            "invitations": [rule],
        }
    )
    assert settings.invitations[0].when.also_when_unavailable is True
    wrong = [{"when": {"also_when_unavailable": "sometimes"}, "text": {"en": "x"}}]
    with pytest.raises(ConfigError) as err:
        load_config_text(with_invitations(tmp_path, wrong))
    assert "channels[1].invitations[0].when.also_when_unavailable" in str(err.value)
    guessed = [{"when": {"available": False}, "text": {"en": "x"}}]  # not the key's name
    with pytest.raises(ConfigError) as err:
        load_config_text(with_invitations(tmp_path, guessed))
    assert "channels[1].invitations[0].when.available" in str(err.value)
