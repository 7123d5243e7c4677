"""The gateway on PostgreSQL (`store: {backend: postgres, dsn: ...}`): configured, started,
and two instances sharing one database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import make_store
from gateway.config import ConfigError, load_config_text
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.gateway.conftest import Receiver, agent_token, base_config, config_text, wait_for

GOOD = (Path(__file__).resolve().parents[2] / "config" / "gateway.yaml").read_text()


def test_the_store_backend_is_chosen_in_the_config() -> None:
    assert isinstance(make_store(load_config_text(GOOD, env={})), SqliteStore)
    text = GOOD.replace(
        "  backend: sqlite\n",
        "  backend: postgres\n  dsn: ${PG_DSN}\n  pool_size: 4\n",
    )
    loaded = load_config_text(text, env={"PG_DSN": "postgresql://sb:secret@db:5432/sb"})
    store = make_store(loaded, "instance-1")
    assert isinstance(store, PostgresStore)
    assert (store.dsn, store.pool_size, store.instance) == (
        "postgresql://sb:secret@db:5432/sb",
        4,
        "instance-1",
    )
    assert "secret" not in repr(loaded.config.store)  # the password is not shown
    try:
        load_config_text(GOOD.replace("  backend: sqlite\n", "  backend: postgres\n"), env={})
    except ConfigError as error:
        assert any("store.dsn is required" in str(p) for p in error.problems), error.problems
    else:
        raise AssertionError("a postgres store without a dsn was accepted")


async def test_two_instances_share_one_database(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path, pg_dsn: str
) -> None:
    """A message taken by instance A is assigned once, answered on instance B, and the
    reply leaves once, whichever instance's outbox takes it."""
    cfg = base_config(tmp_path / "unused.sqlite", receiver.url)
    cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
    assert "postgres" in config_text(cfg)
    gw_a, a = await gateway_factory(cfg)
    gw_b, b = await gateway_factory(cfg)
    assert isinstance(gw_a.store, PostgresStore) and gw_a.store.instance != gw_b.store.instance
    status, body = await a.inbound("pg-1", "Please refund my invoice", from_={"name": "Dana"})
    assert status == 202 and body["duplicate"] is False
    conv_id = body["conversation_id"]
    again = await b.inbound("pg-1", "Please refund my invoice")
    assert again[1]["duplicate"] is True and again[1]["conversation_id"] == conv_id
    conv = await wait_for(lambda: b.assigned(conv_id))
    assert conv["assignee"] == "alice" and conv["queue"] == "billing"
    status, msg = await b.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token("alice"),
        json={"text": "Refund sent"},
    )
    assert status == 202
    await wait_for(lambda: a.message_with_status(conv_id, msg["id"], "sent"))
    assert [body["text"] for body in receiver.bodies()] == ["Refund sent"]
    events = await gw_b.store.events_since(0, 1000)
    assigned = [e for e in events if e.type == "conversation.assigned"]
    assert [e.data["conversation_id"] for e in assigned] == [conv_id]  # once, by one
    sent = [e for e in events if e.type == "message.sent"]
    assert [e.data["message"]["id"] for e in sent] == [msg["id"]]
