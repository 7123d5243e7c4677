"""The API described, and fuzzed: `/v1/openapi.json` covers every route the app serves,
and schemathesis, run against the real daemon as each role (bounded in examples), finds no
5xx and no answer that violates the document."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.openapi import document
from tests.gateway.conftest import (
    ADMIN,
    CHANNEL,
    agent_token,
    base_config,
    config_text,
)
from tests.gateway.test_e2e_daemon import Daemon, free_port

# Routes that are not the JSON API: provider webhooks speak the provider's protocol, the
# console and widget serve pages and scripts.
NOT_API = re.compile(r"^/(channels/|webchat/|surveys/|portal/|help|console|$|demo|plain|static/)")

# schemathesis' negative-data check also counts 413 (a too-long field in a body over
# server.max_body_bytes) as the refusal it is; "schema-valid data accepted" is off because
# the API rightly refuses schema-valid data the document cannot describe (an agent id that
# does not exist, a phone number that is not one).
SCHEMATHESIS_CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
"""


async def test_document_covers_every_route(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    status, doc = await client.call("GET", "/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    served = set()
    for route in gw.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if route.method in ("HEAD", "*") or NOT_API.match(path):
            continue
        served.add((route.method, path))
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented routes the app does not serve"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["x-roles"] is not None, (method, path)
            errors = [c for c in op["responses"] if c.startswith("4")]
            assert errors, (method, path)
            for code in errors:
                schema = op["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    # Request bodies are the handlers' own models.
    reply = doc["paths"]["/v1/conversations/{id}/messages"]["post"]["requestBody"]
    assert reply["content"]["application/json"]["schema"]["$ref"].endswith("/ReplyBody")
    assert doc["components"]["schemas"]["ReplyBody"]["additionalProperties"] is False


def test_document_builds_without_a_gateway() -> None:
    assert json.dumps(document())  # serialisable, no gateway state needed


async def _seed(base: str) -> None:
    """Some data for the fuzzer to find: a routed conversation with a reply."""
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            async with http.post(
                f"{base}/v1/channels/api/messages",
                json={"external_id": f"st-{i}", "from": {"id": f"c{i}"}, "text": "refund"},
                headers={"Authorization": f"Bearer {CHANNEL}"},
            ) as r:
                assert r.status == 202


# Four schemathesis runs over every operation: its budget grows with the API, not a hang.
@pytest.mark.timeout(480)
async def test_schemathesis_finds_no_5xx_and_no_answer_off_the_document(
    tmp_path: Path,
) -> None:
    port = free_port()
    cfg = base_config(tmp_path / "gw.db")
    cfg["server"]["port"] = port
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(cfg))
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    await daemon.start()
    base = f"http://127.0.0.1:{port}"
    st_config = tmp_path / "schemathesis.toml"
    st_config.write_text(SCHEMATHESIS_CONFIG)
    schemathesis = [sys.executable, "-m", "schemathesis.cli"]
    try:
        await _seed(base)
        runs = [
            (ADMIN, ["--exclude-path", "/v1/channels/api/messages"]),
            (agent_token("bob"), ["--exclude-path", "/v1/channels/api/messages"]),
            ("test-integration-token", ["--exclude-path", "/v1/channels/api/messages"]),
            (CHANNEL, ["--include-path", "/v1/channels/api/messages"]),
        ]
        for token, select in runs:
            proc = subprocess.run(
                [
                    *schemathesis,
                    "--config-file",
                    str(st_config),
                    "run",
                    f"{base}/v1/openapi.json",
                    "-H",
                    f"Authorization: Bearer {token}",
                    "--checks",
                    "all",
                    "--exclude-checks",
                    "positive_data_acceptance",
                    "--exclude-path",
                    "/v1/events",  # a stream: it never ends (tested in test_api)
                    *select,
                    "--max-examples",
                    "15",
                    "--seed",
                    "20261129",
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                cwd=tmp_path,  # its cache stays out of the repository
                timeout=240,
                check=False,
            )
            summary = proc.stdout[-6000:]
            assert proc.returncode == 0, f"schemathesis as {token}:\n{summary}"
            counts = re.search(r"(\d+) generated, (\d+) passed", summary)
            assert counts and int(counts[2]) > 0, summary
    finally:
        assert daemon.terminate() == 0
    log = (tmp_path / "daemon.log").read_text()
    errors = [json.loads(line) for line in log.splitlines() if '"level": "error"' in line]
    assert errors == [], errors[:3]
