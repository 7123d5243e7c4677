"""Issue 12 against the real `switchboard run` process: the config reloaded on SIGHUP and
through `POST /v1/admin/reload` (a bad one refused, the running one kept), and an offer
rejected then accepted through the API."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.conftest import ADMIN, CHANNEL, agent_token, base_config, config_text, wait_for
from tests.gateway.test_e2e_daemon import Daemon, free_port


class Api:
    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http, self.base = http, f"http://127.0.0.1:{port}"

    async def call(
        self, method: str, path: str, token: str = ADMIN, json: Any = None
    ) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, headers={"Authorization": f"Bearer {token}"}, json=json
        ) as r:
            return r.status, await r.json()

    async def write(self, external_id: str, text: str, sender: str = "cust-1") -> str:
        status, body = await self.call(
            "POST",
            "/v1/channels/api/messages",
            token=CHANNEL,
            json={"external_id": external_id, "text": text, "from": {"id": sender}},
        )
        assert status == 202, body
        return str(body["conversation_id"])

    async def queue_of(self, text: str) -> str:
        status, body = await self.call(
            "POST", "/v1/routing/explain", json={"channel": "api", "text": text}
        )
        assert status == 200, body
        return str(body["classification"]["queue"])


def write_config(path: Path, cfg: dict[str, Any]) -> None:
    path.write_text(config_text(cfg))


async def test_reload_on_sighup_and_through_the_api(tmp_path: Path) -> None:
    port = free_port()
    cfg = base_config(tmp_path / "gw.db")
    cfg["server"]["port"] = port
    config = tmp_path / "gateway.yaml"
    write_config(config, cfg)
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(http, port)
            assert await api.queue_of("my parcel is late") == "general"
            # A new rule, then SIGHUP: the running daemon routes by it.
            cfg["routing"]["rules"].insert(
                0,
                {
                    "name": "parcels",
                    "when": {"text": {"contains": "parcel"}},
                    "then": {"queue": "billing"},
                },
            )
            write_config(config, cfg)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)

            async def reloaded() -> bool:
                return await api.queue_of("my parcel is late") == "billing"

            await wait_for(reloaded, timeout=10)
            conv_id = await api.write("r1", "where is my parcel")
            _, conv = await api.call("GET", f"/v1/conversations/{conv_id}")
            assert conv["queue"] == "billing" and conv["routing"]["rule"] == "parcels"

            # A bad config on SIGHUP: refused with the key path in the log; the old one runs.
            bad = dict(cfg)
            bad["routing"] = {**cfg["routing"], "default": {"queue": "nowhere"}}
            write_config(config, bad)
            daemon.proc.send_signal(signal.SIGHUP)

            def refused() -> bool:
                return "routing.default.queue" in daemon.log.read_text()

            await wait_for(refused, timeout=10)
            assert "reload refused" in daemon.log.read_text()
            assert await api.queue_of("my parcel is late") == "billing"

            # The same through the API: 422 with each problem; only an admin may reload.
            status, body = await api.call("POST", "/v1/admin/reload")
            assert status == 422 and body["error"]["code"] == "invalid_config"
            assert [d["field"] for d in body["error"]["details"]] == ["routing.default.queue"]
            assert "unknown queue 'nowhere'" in body["error"]["details"][0]["message"]
            status, _ = await api.call("POST", "/v1/admin/reload", token=agent_token("alice"))
            assert status == 403
            # A section that needs a restart is refused too, naming it.
            moved = dict(cfg)
            moved["server"] = {**cfg["server"], "shutdown_timeout": 3}
            write_config(config, moved)
            status, body = await api.call("POST", "/v1/admin/reload")
            assert status == 422 and [d["field"] for d in body["error"]["details"]] == ["server"]
            # A good one: swapped, and what changed is said.
            del cfg["routing"]["rules"][0]
            write_config(config, cfg)
            status, body = await api.call("POST", "/v1/admin/reload")
            assert status == 200 and body == {
                "reloaded": True,
                "changed": ["routing"],
                "problems": [],
            }
            assert await api.queue_of("my parcel is late") == "general"
            # The conversation classified before keeps its queue.
            _, conv = await api.call("GET", f"/v1/conversations/{conv_id}")
            assert conv["queue"] == "billing"
    finally:
        assert daemon.terminate() == 0


async def test_offer_rejected_then_accepted_through_the_api(tmp_path: Path) -> None:
    port = free_port()
    cfg = base_config(tmp_path / "gw.db")
    cfg["server"]["port"] = port
    cfg["routing"]["queues"][0]["offers"] = {"timeout": "10m", "channel_kinds": ["api"]}
    config = tmp_path / "gateway.yaml"
    write_config(config, cfg)
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(http, port)
            conv_id = await api.write("o1", "hello there")

            async def offered_to(agent: str) -> bool:
                _, body = await api.call("GET", "/v1/offers", token=agent_token(agent))
                return [o["conversation_id"] for o in body["offers"]] == [conv_id]

            await wait_for(lambda: offered_to("alice"), timeout=10)
            _, conv = await api.call("GET", f"/v1/conversations/{conv_id}")
            assert conv["assignee"] is None and conv["offer"]["agent"] == "alice"
            status, _ = await api.call(
                "POST", f"/v1/conversations/{conv_id}/offer/reject", token=agent_token("alice")
            )
            assert status == 200
            await wait_for(lambda: offered_to("bob"), timeout=10)
            status, body = await api.call(
                "POST", f"/v1/conversations/{conv_id}/offer/accept", token=agent_token("bob")
            )
            assert status == 200 and body["assignee"] == "bob"
            # Alice's answer after she rejected: 409.
            status, body = await api.call(
                "POST", f"/v1/conversations/{conv_id}/offer/accept", token=agent_token("alice")
            )
            assert status == 409, body
            # An admin names the agent.
            status, body = await api.call(
                "POST", f"/v1/conversations/{conv_id}/offer/accept", json={}
            )
            assert status == 422
    finally:
        assert daemon.terminate() == 0
