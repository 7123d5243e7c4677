"""YAML alias bombs in the config file (and knowledge-base front matter): a "billion
laughs" document made `switchboard check` run for a minute and take 4 GB, a self-referential
alias a RecursionError traceback. Both are config problems with a line, found at once; the
few reused blocks a real config has keep working."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import ConfigError, load_config, load_config_text
from gateway.kb.articles import parse_article
from tests.gateway.conftest import ADMIN, base_config, config_text

LAUGHS = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)
SELF = "server:\n  port: 8080\na: &a [*a]\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={})
    return [str(p) for p in info.value.problems]


def test_a_billion_laughs_is_refused_at_once_naming_the_line() -> None:
    started = time.monotonic()
    found = problems(LAUGHS)
    assert time.monotonic() - started < 0.5
    assert found == ["(yaml) (line 6): aliases expand to more than 200000 values (an alias bomb?)"]


def test_an_alias_inside_its_own_block_is_refused_naming_the_line() -> None:
    assert problems(SELF) == ["(yaml) (line 3): an alias refers to the block it is in (recursive)"]


def test_reused_blocks_load(tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    # The first agent's capacity is anchored, the others reuse it.
    text = config_text(cfg).replace("  capacity:\n    default: 2\n", "  capacity: *cap\n")
    text = text.replace("  capacity: *cap\n", "  capacity: &cap\n    default: 3\n", 1)
    loaded = load_config_text(text, env={})
    assert text.count("*cap") == 1
    assert {a.id: dict(a.capacity) for a in loaded.config.agents} == {
        "alice": {"default": 3},
        "bob": {"default": 3},
        "carol": {"default": 1},
    }


def test_cli_check_refuses_a_bomb_as_a_config_problem(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(LAUGHS)
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(bomb)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 1
    assert "(line 6): aliases expand to more than 200000 values" in res.stderr
    assert "Traceback" not in res.stderr
    bomb.write_text(SELF)
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(bomb)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 1 and "(recursive)" in res.stderr and "Traceback" not in res.stderr


async def test_reloading_a_bomb_keeps_the_running_config(tmp_path: Path) -> None:
    from gateway.app import Gateway

    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(base_config(tmp_path / "db.sqlite")))
    gw = Gateway(load_config(path, env={}))
    await gw.start()
    try:
        running = gw.config
        for text, words in ((LAUGHS, "alias bomb"), (SELF, "recursive")):
            path.write_text(text)
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{gw.port}/v1/admin/reload",
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as resp,
            ):
                body: Any = await resp.json()
            assert resp.status == 422 and body["error"]["code"] == "invalid_config"
            (problem,) = body["error"]["details"]
            assert problem["field"] == "(yaml)" and words in problem["message"], problem
            assert gw.config is running
    finally:
        await gw.stop()


def test_a_bomb_in_an_article_front_matter_is_a_problem_of_that_file() -> None:
    text = "---\n" + LAUGHS.replace("i: &i", "tags: &i") + "\ntitle: Hi\n---\nBody\n"
    article, found = parse_article(text, "bomb.md", "en")
    assert article is None
    assert [(p.file, p.line) for p in found] == [("bomb.md", 7)]
    assert "alias bomb" in found[0].message
