"""`portal:` in the config: defaults, durations, and precise problems from `switchboard
check` (each naming its key path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config_text
from tests.gateway.conftest import base_config, config_text


def test_the_portal_is_off_by_default_and_links_last_a_week(tmp_path: Path) -> None:
    loaded = load_config_text(config_text(base_config(tmp_path / "db.sqlite")))
    assert loaded.config.portal.enabled is False
    assert loaded.config.portal.link_ttl == 7 * 86400
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["portal"] = {"enabled": True, "link_ttl": "36h", "secret": "a" * 32}
    portal = load_config_text(config_text(cfg)).config.portal
    assert portal.enabled and portal.link_ttl == 36 * 3600


@pytest.mark.parametrize(
    ("portal", "path", "words"),
    [
        ({"link_ttl": "forever"}, "portal.link_ttl", "duration"),
        ({"link_ttl": "365d"}, "portal.link_ttl", "less than or equal"),
        ({"secret": "short"}, "portal.secret", "at least 16 characters"),
        ({"enabeld": True}, "portal.enabeld", "unknown key"),
        ({"max_reply_chars": 0}, "portal.max_reply_chars", "greater than or equal"),
        ({"timezone": "Mars/Olympus"}, "portal.timezone", "unknown time zone"),
    ],
)
def test_a_wrong_portal_section_is_refused_naming_the_key(
    tmp_path: Path, portal: dict[str, object], path: str, words: str
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["portal"] = portal
    with pytest.raises(ConfigError) as err:
        load_config_text(config_text(cfg))
    assert any(p.path == path and words in p.message for p in err.value.problems), [
        (p.path, p.message) for p in err.value.problems
    ]


def test_switchboard_check_reports_it(tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["portal"] = {"enabled": True, "link_ttl": "soon"}
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "portal.link_ttl" in res.stderr
    assert "Traceback" not in res.stderr
