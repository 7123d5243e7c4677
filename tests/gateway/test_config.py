"""A wrong config is refused with every problem, each with its key path and line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import ConfigError, json_schema, load_config_text

ROOT = Path(__file__).resolve().parents[2]
GOOD = (ROOT / "config" / "gateway.yaml").read_text()


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env=env or {})
    return [str(p) for p in info.value.problems]


def test_shipped_config_is_valid() -> None:
    loaded = load_config_text(GOOD, env={})
    assert [c.name for c in loaded.config.channels] == ["api", "webchat"]
    assert loaded.config.conversations.reopen_window == 72 * 3600


def test_env_substitution() -> None:
    loaded = load_config_text(
        GOOD, env={"SWITCHBOARD_PORT": "9999", "API_CHANNEL_TOKEN": "from-the-env-123"}
    )
    assert loaded.config.server.port == 9999
    assert loaded.channel_settings["api"].inbound_token.get_secret_value() == "from-the-env-123"  # type: ignore[attr-defined]
    text = GOOD.replace(
        "${SWITCHBOARD_ADMIN_TOKEN:-demo-admin-token}", "${SWITCHBOARD_ADMIN_TOKEN}"
    )
    assert any(
        "auth.tokens[0].token" in p and "SWITCHBOARD_ADMIN_TOKEN is not set" in p
        for p in problems(text)
    )


def test_every_problem_at_once_with_paths_and_lines() -> None:
    text = (
        GOOD.replace("port: ${SWITCHBOARD_PORT:-8080}", "port: eighty")
        .replace("    strategy: round_robin\n", "    strategy: random\n", 1)
        .replace(
            "    inbound_token: ${API_CHANNEL_TOKEN:-demo-channel-token}\n",
            "    inbound_token: ${API_CHANNEL_TOKEN:-demo-channel-token}\n    colour: blue\n",
        )
        .replace("capacity: {default: 2}", "capacity: {default: -1}")
        .replace("queues: [general, vip]", "queues: [general, nowhere]")
    )
    found = problems(text)
    lines = text.splitlines()

    def line_of(needle: str) -> int:
        return next(i + 1 for i, line in enumerate(lines) if needle in line)

    expected = {
        f"server.port (line {line_of('port: eighty')})": "integer",
        "routing.queues[0].strategy": "round_robin",
        f"channels[0].colour (line {line_of('colour: blue')})": "unknown key",
        "agents[2].capacity.default": "greater than or equal to 0",
    }
    for prefix, words in expected.items():
        assert any(p.startswith(prefix) and words in p for p in found), (prefix, found)
    # The unknown queue is found only once the fields are valid: fix the rest, see it.
    only_queue = GOOD.replace("queues: [general, vip]", "queues: [general, nowhere]")
    assert any(
        p.startswith("agents[1].queues[1]") and "unknown queue 'nowhere'" in p
        for p in problems(only_queue)
    )


@pytest.mark.parametrize(
    ("mutation", "path", "words"),
    [
        (("store:\n", "stor:\n"), "stor", "unknown key"),
        (
            ("type: api", "type: carrier-pigeon"),
            "channels[0].type",
            "unknown channel type 'carrier-pigeon'",
        ),
        (
            (
                "signing_secret: ${API_SIGNING_SECRET:-whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}",
                "signing_secret: plain",
            ),
            "channels[0].signing_secret",
            "whsec_",
        ),
        (("    agent: bob\n", "    agent: zed\n"), "auth.tokens[3].agent", "configured agent"),
        (
            ('regex: "(?i)\\\\b(down', 'regex: "(?i)\\\\b((down'),
            "routing.rules[2].when.text.regex",
            "regex",
        ),
        (("reopen_window: 72h", "reopen_window: soon"), "conversations.reopen_window", "duration"),
    ],
)
def test_single_problems(mutation: tuple[str, str], path: str, words: str) -> None:
    assert mutation[0] in GOOD, mutation
    found = problems(GOOD.replace(*mutation))
    assert any(p.startswith(path) and words in p for p in found), found


def test_yaml_syntax_error_has_a_line() -> None:
    found = problems("server:\n  port: [1,\n")
    assert found and "(yaml)" in found[0] and "line" in found[0]


def test_cli_check_and_schema(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(ROOT / "config/gateway.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("port: ${SWITCHBOARD_PORT:-8080}", "port: eighty"))
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(bad)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "server.port" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(bad)], capture_output=True, text=True
    )
    assert res.returncode == 2 and "server.port" in res.stderr and "Traceback" not in res.stderr
    committed = json.loads((ROOT / "config" / "gateway.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), (
        "run: switchboard schema -o config/gateway.schema.json"
    )


def route(
    *args: str, config: Path = ROOT / "config/gateway.yaml"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "route",
            "-c",
            str(config),
            "--channel",
            "api",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_cli_route_explains_the_readme_example_in_words_and_as_json(tmp_path: Path) -> None:
    args = ("--text", "our site is down", "--attr", "segment=vip")
    res = route(*args)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    # Both rules that matched, what each set, the result: urgent (not the first rule's high).
    assert lines[0] == "Rules that matched (top to bottom):"
    assert lines[1].startswith("  - vip-customers: contact segment is 'vip' → sets queue=vip")
    assert "[continue: later rules may add]" in lines[1]
    assert lines[2].startswith("  - outage: text matches regex")
    assert "Result: queue vip, priority urgent, skills technical>=5, tags vip, incident" in lines
    # Each candidate with its score or its exclusion, then the decision.
    assert "  - alice: excluded (lacks skill technical>=5)" in lines
    assert "  + bob: load 0/3" in lines
    assert lines[-1].startswith("Decision: bob")
    out = json.loads(route(*args, "--json").stdout)
    cls = out["classification"]
    assert (cls["rule"], cls["queue"], cls["priority"]) == ("vip-customers", "vip", "urgent")
    assert cls["rules"] == ["vip-customers", "outage"]
    assert out["decision"]["agent"] == "bob"
    assert [c["agent"] for c in out["candidates"]] == ["alice", "bob"]


def test_cli_route_shows_the_escalation_steps(tmp_path: Path) -> None:
    res = route("--text", "I was charged twice, refund please")
    assert res.returncode == 0, res.stderr
    assert "Escalation (billing): step 0 of 2" in res.stdout
    assert "  [ ] after 10m: billing>=3 at most" in res.stdout
    assert "after the last step: it stays waiting as the last step left it" in res.stdout
    assert "next step in 10m" in res.stdout


def test_cli_route_shows_hours_and_sla_due_times(tmp_path: Path) -> None:
    cfg = yaml.safe_load(GOOD)
    cfg["routing"]["sla"] = {
        "policies": [
            {
                "name": "vip",
                "when": {"segment": ["vip"]},
                "first_response": "30m",
                "resolution": "4h",
            }
        ]
    }
    path = tmp_path / "sla.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = ("--text", "our site is down", "--attr", "segment=vip")
    res = route(*args, config=path)
    assert res.returncode == 0, res.stderr
    assert "Hours: always open (no calendar)" in res.stdout
    assert "SLA (vip):" in res.stdout
    assert re.search(r"^  first response due \S+Z \(in 30m\)$", res.stdout, re.M), res.stdout
    assert re.search(r"^  resolution due \S+Z \(in 4h\)$", res.stdout, re.M), res.stdout
    out = json.loads(route(*args, "--json", config=path).stdout)
    due = out["time"]["sla"]["due"]
    assert round(due["resolution"] - due["first_response"]) == 4 * 3600 - 30 * 60
    # The vip queue closed for good: it says so, and where the conversation waits.
    cfg["routing"]["hours"] = {
        "gone": {"timezone": "Europe/Berlin", "special": {"2020-01-06": ["09:00-10:00"]}}
    }
    for queue in cfg["routing"]["queues"]:
        if queue["name"] == "vip":
            queue["hours"] = "gone"
    path.write_text(yaml.safe_dump(cfg))
    res = route(*args, config=path)
    assert "Hours (gone): closed now, opens never (check the calendar)" in res.stdout
    assert "  queue 'vip' is closed: the conversation waits for the opening" in res.stdout
    assert "  first response due not counted yet" in res.stdout


def test_check_warns_about_rules_nobody_can_serve(tmp_path: Path) -> None:
    cfg = yaml.safe_load(GOOD)
    cfg["routing"]["queues"].append({"name": "night"})
    cfg["routing"]["rules"] = [
        {
            "name": "klingon",
            "when": {"text": {"contains": "qapla"}},
            "then": {"skills": {"klingon": 2}},
        },
        {
            "name": "expert",
            "when": {"text": {"contains": "x"}},
            "then": {"skills": {"billing": 10}},
        },
        {"name": "nights", "when": {"text": {"contains": "y"}}, "then": {"queue": "night"}},
    ]
    path = tmp_path / "warn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: routing.queues: queue 'night' is served by no agent",
        "warning: routing.rules[0] (klingon): needs skill 'klingon', which no agent has",
        "warning: routing.rules[1] (expert): needs billing>=10, but no agent reaches it (best: 8)",
        "warning: routing.rules[2] (nights): sends to queue 'night', which no agent serves",
    ]


def test_check_warns_about_hours_that_never_open(tmp_path: Path) -> None:
    cfg = yaml.safe_load(GOOD)
    cfg["routing"]["hours"] = {
        # every weekday closed: the only open hours are a special date long past
        "never": {"timezone": "Europe/Berlin", "special": {"2020-01-06": ["09:00-17:00"]}},
        "office": {"timezone": "Europe/Berlin", "weekly": {"mon": ["08:00-18:00"]}},
    }
    cfg["routing"]["default_hours"] = "office"
    cfg["routing"]["queues"][0]["hours"] = "never"
    path = tmp_path / "hours.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    queue = cfg["routing"]["queues"][0]["name"]
    assert warnings == [
        "warning: routing.hours.never: never opens in the next 400 days "
        f"(queues: {queue}); conversations there wait until an agent takes one by hand"
    ]


def test_acknowledgement_template_and_channels_are_checked() -> None:
    text = GOOD.replace(
        "conversations:\n  reopen_window: 72h",
        "conversations:\n  reopen_window: 72h\n  acknowledgement:\n    text: 'Hi {name'\n    channels: [fax]",
    )
    found = problems(text)
    assert any(
        p.startswith("conversations.acknowledgement.text") and "template" in p for p in found
    ), found
    fixed = text.replace("'Hi {name'", "'Hi {name}'")
    assert any(
        p.startswith("conversations.acknowledgement.channels[0]") and "unknown channel 'fax'" in p
        for p in problems(fixed)
    )


def test_empty_variable_takes_the_default_like_a_shell() -> None:
    loaded = load_config_text(GOOD, env={"SWITCHBOARD_PORT": ""})
    assert loaded.config.server.port == 8080


def test_store_durability_setting() -> None:
    loaded = load_config_text(
        GOOD.replace("  backend: sqlite\n", "  backend: sqlite\n  synchronous: full\n"), env={}
    )
    assert loaded.config.store.synchronous == "full"
    found = problems(
        GOOD.replace("  backend: sqlite\n", "  backend: sqlite\n  synchronous: sometimes\n")
    )
    assert any(p.startswith("store.synchronous") for p in found), found


def test_paths_are_data_paths_whatever_the_keys_or_types() -> None:
    # A user key starting with a capital letter stays in the path.
    found = problems(
        GOOD.replace("skills: {billing: 8, english: 9, french: 6}", "skills: {Billing: 11}")
    )
    assert any(p.startswith("agents[0].skills.Billing (line") for p in found), found
    # A field accepting several types is one problem at the user's key, not one per type.
    found = problems(
        GOOD.replace("when: {contact: {segment: vip}}", "when: {contact: {segment: {x: 1}}}")
    )
    assert len(found) == 1 and found[0].startswith("routing.rules[0].when.contact.segment (line"), (
        found
    )
    # A missing key is named.
    found = problems(
        GOOD.replace(
            "  default: {queue: general, priority: normal}\n", "  default: {priority: normal}\n"
        )
    )
    assert any(p.startswith("routing.default.queue") and "required" in p for p in found), found
