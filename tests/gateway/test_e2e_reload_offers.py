"""Issue 12 against the real `switchboard run` process: the config reloaded on SIGHUP and
through `POST /v1/admin/reload` (a bad one refused, the running one kept), and an offer
rejected then accepted through the API."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.faketime import faketime_env, write_clock
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

            await wait_for(reloaded, timeout=30)
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

            await wait_for(refused, timeout=30)
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

            await wait_for(lambda: offered_to("alice"), timeout=30)
            _, conv = await api.call("GET", f"/v1/conversations/{conv_id}")
            assert conv["assignee"] is None and conv["offer"]["agent"] == "alice"
            status, _ = await api.call(
                "POST", f"/v1/conversations/{conv_id}/offer/reject", token=agent_token("alice")
            )
            assert status == 200
            await wait_for(lambda: offered_to("bob"), timeout=30)
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


class FakeTimeDaemon(Daemon):
    """The daemon with its wall clock under the test's control (libfaketime): the offset
    written to `clock_file` (`+600` = ten minutes ahead) is read at every call; the
    monotonic clock (asyncio's timers) is left real."""

    def __init__(self, config: Path, port: int, log: Path, clock_file: Path) -> None:
        super().__init__(config, port, log, env=faketime_env(clock_file))
        self.clock_file = clock_file
        self.set_offset(0)

    def set_offset(self, seconds: int) -> None:
        write_clock(self.clock_file, f"+{seconds}")


async def test_offer_timeout_and_escalation_in_the_daemon_across_a_kill(tmp_path: Path) -> None:
    port = free_port()
    cfg = base_config(tmp_path / "gw.db")
    cfg["server"]["port"] = port
    cfg["timers"] = {"max_sleep": 0.2}
    cfg["routing"]["queues"][0]["offers"] = {"timeout": "60s", "channel_kinds": ["api"]}
    cfg["routing"]["escalation"] = {
        "steps": [{"after": "10m", "priority": "urgent"}],
        "after_last": "stay",
    }
    config = tmp_path / "gateway.yaml"
    write_config(config, cfg)
    daemon = FakeTimeDaemon(config, port, tmp_path / "daemon.log", tmp_path / "clock")
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(http, port)
            conv_id = await api.write("t1", "hello")

            async def offer_to() -> str | None:
                _, conv = await api.call("GET", f"/v1/conversations/{conv_id}")
                return conv["offer"]["agent"] if conv["offer"] else None

            assert await wait_for(offer_to, timeout=30) == "alice"
            # A minute later (the daemon's clock): alice's offer expired, bob's is made.
            daemon.set_offset(61)

            async def bobs() -> bool:
                return await offer_to() == "bob"

            await wait_for(bobs, timeout=30)
            # kill -9 while bob's offer and the escalation step are pending; eleven
            # minutes pass; the new process fires both at once.
            daemon.kill()
            daemon.set_offset(61 + 660)
            await daemon.start()

            async def escalated() -> dict[str, Any] | None:
                _, conv = await api.call("GET", f"/v1/conversations/{conv_id}")
                return conv if conv["priority"] == "urgent" else None

            conv = await wait_for(escalated, timeout=30)
            assert conv["escalation"]["step"] == 1
            _, offers = await api.call("GET", "/v1/offers")
            # Bob's offer expired after the restart; the conversation is offered again
            # (alice and bob are skipped for it for 15 minutes: nobody else is online).
            assert offers["offers"] == []
            _, conv = await api.call("GET", f"/v1/conversations/{conv_id}")
            assert conv["assignee"] is None
    finally:
        assert daemon.terminate() == 0
